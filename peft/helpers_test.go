package peft

import (
	"flag"
	"hash/fnv"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk/vktest"
)

func TestMain(m *testing.M) { vktest.Main(m) }

// update rewrites the example adapters in testdata/ from examples().
var update = flag.Bool("update", false, "rewrite the example adapters in testdata/")

// fill gives a tensor of key the deterministic values k/16, k in
// [-11, 11], which every dtype holds exactly, so a test can rebuild the
// expected values of a committed file without reading it.
func fill(key string, d dtype.DType, shape ...int) *Tensor {
	h := fnv.New32a()
	h.Write([]byte(key))
	seed := int(h.Sum32() % 97)
	t := zeros(d, shape...)
	for i := range t.Data {
		t.Data[i] = float32((i*37+seed*11)%23-11) / 16
	}
	return t
}

// positive is fill shifted into (0, 2): DoRA magnitudes are norms.
func positive(key string, d dtype.DType, shape ...int) *Tensor {
	t := fill(key, d, shape...)
	for i := range t.Data {
		t.Data[i] = 1 + t.Data[i]/2
	}
	return t
}

// module builds the module cfg gives path, with fill values.
func module(t testing.TB, cfg *Config, path string, in, out int, d dtype.DType) *Module {
	t.Helper()
	m, err := cfg.NewModule(path, in, out, d)
	require.NoError(t, err)
	k := keyPrefix + path
	m.A = fill(k+suffixA, d, m.R, in)
	m.B = fill(k+suffixB, d, out, m.R)
	if m.LoRABias != nil {
		m.LoRABias = fill(k+suffixLoRABias, d, out)
	}
	if m.Magnitude != nil {
		m.Magnitude = positive(k+suffixMagnitude, d, out)
	}
	return m
}

// example is one committed adapter directory and the adapter it holds.
type example struct {
	dir     string
	adapter func(t testing.TB) *Adapter
}

// examples are the adapters in testdata/, each written in PEFT 0.21's
// format, together covering the three dtypes, rank and alpha patterns,
// rsLoRA, DoRA, lora_bias, the three bias modes, list and regex targets
// and layers_to_transform.
func examples() []example {
	return []example{
		{"testdata/llama-lora-f32", func(t testing.TB) *Adapter {
			// q_proj and v_proj of two layers; v narrower (grouped-query attention).
			c := DefaultConfig()
			c.TaskType, c.BaseModelNameOrPath, c.InferenceMode = "CAUSAL_LM", "tiny-llama", true
			c.R, c.LoRAAlpha, c.LoRADropout = 4, 8, 0.05
			c.TargetModules = &ModuleSet{Names: []string{"v_proj", "q_proj"}}
			c.RankPattern = []RankPattern{{"model.layers.1.self_attn.q_proj", 2}}
			c.AlphaPattern = []AlphaPattern{{"v_proj", 16}}
			c.Kept["peft_version"] = []byte(`"0.21.2"`)
			a := &Adapter{Config: c, Modules: map[string]*Module{}}
			for _, p := range []struct {
				path    string
				in, out int
			}{
				{"model.layers.0.self_attn.q_proj", 8, 8}, {"model.layers.0.self_attn.v_proj", 8, 4},
				{"model.layers.1.self_attn.q_proj", 8, 8}, {"model.layers.1.self_attn.v_proj", 8, 4},
			} {
				a.Modules[p.path] = module(t, &a.Config, p.path, p.in, p.out, dtype.F32)
			}
			return a
		}},
		{"testdata/dora-bf16", func(t testing.TB) *Adapter {
			// DoRA on o_proj by regex, rsLoRA, trained base biases (lora_only).
			c := DefaultConfig()
			c.TaskType, c.BaseModelNameOrPath, c.InferenceMode = "CAUSAL_LM", "tiny-llama", true
			c.R, c.LoRAAlpha, c.UseRSLoRA, c.UseDoRA, c.Bias = 2, 4, true, true, BiasLoRAOnly
			c.TargetModules = &ModuleSet{IsRegex: true, Regex: `model\.layers\.\d+\.self_attn\.o_proj`}
			c.Kept["peft_version"] = []byte(`"0.21.2"`)
			a := &Adapter{Config: c, Modules: map[string]*Module{}}
			for _, p := range []string{"model.layers.0.self_attn.o_proj", "model.layers.1.self_attn.o_proj"} {
				m := module(t, &a.Config, p, 8, 8, dtype.BF16)
				m.BaseBias = fill(keyPrefix+p+suffixBaseBias, dtype.BF16, 8)
				a.Modules[p] = m
			}
			return a
		}},
		{"testdata/lorabias-f16", func(t testing.TB) *Adapter {
			// lora_bias on layer 1's down_proj only; bias "all" also saves
			// the bias of layer 0's down_proj, which has no adapter.
			c := DefaultConfig()
			c.TaskType, c.BaseModelNameOrPath, c.InferenceMode = "CAUSAL_LM", "tiny-llama", true
			c.R, c.LoRAAlpha, c.LoRABias, c.Bias = 4, 16, true, BiasAll
			c.TargetModules = &ModuleSet{Names: []string{"down_proj"}}
			c.LayersToTransform, c.LayersPattern = []int{1}, []string{"layers"}
			c.Kept["peft_version"] = []byte(`"0.21.2"`)
			a := &Adapter{Config: c, Modules: map[string]*Module{}}
			p := "model.layers.1.mlp.down_proj"
			m := module(t, &a.Config, p, 12, 8, dtype.F16)
			m.BaseBias = fill(keyPrefix+p+suffixBaseBias, dtype.F16, 8)
			a.Modules[p] = m
			q := "model.layers.0.mlp.down_proj"
			a.OtherBiases = map[string]*Tensor{q: fill(keyPrefix+q+suffixBias, dtype.F16, 8)}
			return a
		}},
	}
}

// TestUpdateExamples rewrites testdata/ with -update; otherwise it checks
// that every example is present.
func TestUpdateExamples(t *testing.T) {
	for _, e := range examples() {
		if *update {
			require.NoError(t, os.RemoveAll(e.dir))
			require.NoError(t, Save(e.dir, e.adapter(t)))
		}
		for _, f := range []string{ConfigName, WeightsName} {
			_, err := os.Stat(filepath.Join(e.dir, f))
			require.NoError(t, err, "run go test ./peft -run TestUpdateExamples -update")
		}
	}
}

// copyDir copies the example files of src into a new temporary directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	for _, f := range []string{ConfigName, WeightsName} {
		b, err := os.ReadFile(filepath.Join(src, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, f), b, 0o644))
	}
	return dst
}
