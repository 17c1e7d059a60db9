package peft

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/lora"
)

// The expected results of these tables are CPython 3's for PEFT's exact
// expressions (re.match(rf"(.*\.)?({key})$", path) and so on).

func TestPatternKeyMatchesPython(t *testing.T) {
	for _, c := range []struct {
		key, path string
		want      bool
	}{
		{"q_proj", "model.layers.0.self_attn.q_proj", true},
		{"q_proj", "model.layers.0.self_attn.qq_proj", false},
		{"proj", "model.layers.0.self_attn.q_proj", false},
		{"layers.1.self_attn.q_proj", "model.layers.1.self_attn.q_proj", true},
		{"layers.1.self_attn.q_proj", "model.layers.11.self_attn.q_proj", false},
		{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.q_proj", true},
		{"model.layers.0.self_attn.q_proj", "x.model.layers.0.self_attn.q_proj", true},
		{"q_proj|v_proj", "model.layers.0.self_attn.v_proj", true},
		{".*proj", "a.q_proj", true},
		{"a)|(b", "a.c", true}, // the key's parentheses regroup PEFT's expression
		{`layers\.[01]\..*q_proj`, "model.layers.1.self_attn.q_proj", true},
		{`layers\.[01]\..*q_proj`, "model.layers.2.self_attn.q_proj", false},
		{"^model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.q_proj", true},
		{"^model.layers.0.self_attn.q_proj", "base.model.layers.0.self_attn.q_proj", false},
	} {
		got, err := patternMatches(c.key, c.path)
		require.NoError(t, err)
		require.Equal(t, c.want, got, "key %q path %q", c.key, c.path)
	}
	_, err := patternMatches("(?=q)q_proj", "q_proj")
	require.ErrorContains(t, err, "is not a regular expression Go's RE2 accepts")
	// RE2 syntax that Python lacks or reads otherwise is refused, not run.
	for _, key := range []string{`self_attn\Qx`, `\pLq`, `[[:alpha:]]_proj`, `(?U)q.+`, `q\z`} {
		_, err := patternMatches(key, "q_proj")
		require.ErrorContains(t, err, "Python's re", key)
	}
}

func TestLayerIndexMatchesPython(t *testing.T) {
	for _, c := range []struct {
		pattern, path string
		want          int // -1: no match
	}{
		{"layers", "model.layers.1.mlp.down_proj", 1},
		{"layers", "layers.1.mlp.down_proj", -1},
		{"", "model.layers.1.mlp.down_proj", 1},
		{"", "model.layers.1.experts.0.down_proj", 1}, // the first numbered segment, not the expert
		{"h", "transformer.h.3.mlp.c_fc", 3},
		{"layers|h", "transformer.h.3.mlp.c_fc", -1}, // top-level alternation, as in Python
		{"(?:layers|h)", "transformer.h.3.mlp.c_fc", 3},
	} {
		c2 := &Config{LayersPattern: []string{c.pattern}, LayersToTransform: []int{c.want}}
		if c.pattern == "" {
			c2.LayersPattern = nil
		}
		got, err := c2.inLayers(c.path)
		require.NoError(t, err, c)
		require.Equal(t, c.want >= 0, got, "pattern %q path %q", c.pattern, c.path)
	}
	// Python's int(None): the group of (\d+) did not take part.
	_, err := (&Config{LayersPattern: []string{"layers|h"}, LayersToTransform: []int{2}}).inLayers("model.layers.2.mlp.down_proj")
	require.ErrorIs(t, err, lora.ErrBadInput)
}

func TestTargets(t *testing.T) {
	list := func(names ...string) *ModuleSet { return &ModuleSet{Names: names} }
	regex := func(re string) *ModuleSet { return &ModuleSet{IsRegex: true, Regex: re} }
	q0, v0, q1 := "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj"
	for _, c := range []struct {
		name string
		cfg  Config
		path string
		want bool
	}{
		{"null targets everything", Config{}, q0, true},
		{"suffix", Config{TargetModules: list("q_proj")}, q0, true},
		{"suffix needs a dot", Config{TargetModules: list("proj")}, q0, false},
		{"exact path", Config{TargetModules: list(q0)}, q0, true},
		{"other name", Config{TargetModules: list("q_proj")}, v0, false},
		{"empty list", Config{TargetModules: list()}, q0, false},
		{"regex full match", Config{TargetModules: regex(`.*\.(q|v)_proj`)}, v0, true},
		{"regex is not a search", Config{TargetModules: regex(`(q|v)_proj`)}, v0, false},
		{"all-linear", Config{TargetModules: regex(AllLinear)}, v0, true},
		{"excluded by list", Config{TargetModules: list("q_proj"), ExcludeModules: list("layers.0.self_attn.q_proj")}, q0, false},
		{"exclude suffix only", Config{TargetModules: list("q_proj"), ExcludeModules: list("layers.0.self_attn.q_proj")}, q1, true},
		{"excluded by regex", Config{TargetModules: list("q_proj"), ExcludeModules: regex(`.*layers\.1\..*`)}, q1, false},
		{"layer kept", Config{TargetModules: list("q_proj"), LayersToTransform: []int{1}}, q1, true},
		{"layer dropped", Config{TargetModules: list("q_proj"), LayersToTransform: []int{1}}, q0, false},
		{"layer pattern", Config{TargetModules: list("q_proj"), LayersToTransform: []int{0}, LayersPattern: []string{"layers"}}, q0, true},
		{"layer pattern absent", Config{TargetModules: list("q_proj"), LayersToTransform: []int{0}, LayersPattern: []string{"h"}}, q0, false},
		// A name equal to the whole path skips the layer test, as in PEFT.
		{"exact path skips layers", Config{TargetModules: list(q0), LayersToTransform: []int{1}}, q0, true},
	} {
		got, err := c.cfg.Targets(c.path)
		require.NoError(t, err, c.name)
		require.Equal(t, c.want, got, c.name)
	}
}

// TestScale: PEFT's scaling with rsLoRA and per-module patterns, the first
// matching key in file order winning, rank and alpha looked up apart.
func TestScale(t *testing.T) {
	c := DefaultConfig()
	c.R, c.LoRAAlpha = 8, 16
	c.RankPattern = []RankPattern{{"model.layers.0.self_attn.q_proj", 4}, {"q_proj", 2}}
	c.AlphaPattern = []AlphaPattern{{"v_proj", 32}, {"layers.0.self_attn.v_proj", 1}}
	q0, q1, v0, o0 := "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.0.self_attn.o_proj"
	for _, x := range []struct {
		path         string
		r            int
		alpha        float64
		rKey, aKey   string
		scale, rsScl float64
	}{
		{q0, 4, 16, "model.layers.0.self_attn.q_proj", "", 4, 8},
		{q1, 2, 16, "q_proj", "", 8, 16 / math.Sqrt(2)},
		{v0, 8, 32, "", "v_proj", 4, 32 / math.Sqrt(8)}, // "v_proj" comes first
		{o0, 8, 16, "", "", 2, 16 / math.Sqrt(8)},
	} {
		r, alpha, rKey, aKey, err := c.rankAlpha(x.path)
		require.NoError(t, err)
		require.Equal(t, []any{x.r, x.alpha, x.rKey, x.aKey}, []any{r, alpha, rKey, aKey}, x.path)
		s, err := c.Scale(x.path)
		require.NoError(t, err)
		require.Equal(t, x.scale, s, x.path)
		rs := c.Clone()
		rs.UseRSLoRA = true
		s, err = rs.Scale(x.path)
		require.NoError(t, err)
		require.Equal(t, x.rsScl, s, x.path)
		require.Equal(t, lora.LoRAScale(x.alpha, x.r, true), s)
	}
}
