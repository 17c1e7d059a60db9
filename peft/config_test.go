package peft

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/lora"
)

// exampleConfig is the committed plain-LoRA config.
func exampleConfig(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/llama-lora-f32/" + ConfigName)
	require.NoError(t, err)
	return b
}

// withKeys returns config JSON b with the given keys set to raw JSON
// values, or removed where the value is "".
func withKeys(t *testing.T, b []byte, kv ...string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &m))
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(m, kv[i])
		} else {
			m[kv[i]] = json.RawMessage(kv[i+1])
		}
	}
	out, err := json.Marshal(m)
	require.NoError(t, err)
	return out
}

func TestParseConfigExample(t *testing.T) {
	c, warn, err := ParseConfig(exampleConfig(t), Options{})
	require.NoError(t, err)
	require.Empty(t, warn)
	require.Equal(t, "LORA", c.PeftType)
	require.Equal(t, "CAUSAL_LM", c.TaskType)
	require.Equal(t, 4, c.R)
	require.Equal(t, 8.0, c.LoRAAlpha)
	require.Equal(t, 0.05, c.LoRADropout)
	require.Equal(t, &ModuleSet{Names: []string{"v_proj", "q_proj"}}, c.TargetModules)
	require.Equal(t, []RankPattern{{"model.layers.1.self_attn.q_proj", 2}}, c.RankPattern)
	require.Equal(t, []AlphaPattern{{"v_proj", 16}}, c.AlphaPattern)
	require.Equal(t, json.RawMessage(`"0.21.2"`), c.Kept["peft_version"])
	// A PEFT-written config writes back byte for byte.
	out, err := MarshalConfig(c)
	require.NoError(t, err)
	require.Equal(t, string(exampleConfig(t)), string(out))
}

// TestParseConfigDefaults: a minimal config gets PEFT's defaults, and
// writing it gives every key LoraConfig writes.
func TestParseConfigDefaults(t *testing.T) {
	c, _, err := ParseConfig([]byte(`{"peft_type": "LORA"}`), Options{})
	require.NoError(t, err)
	want := DefaultConfig()
	require.Equal(t, &want, c)
	out, err := MarshalConfig(c)
	require.NoError(t, err)
	var keys map[string]any
	require.NoError(t, json.Unmarshal(out, &keys))
	for k := range configKeys {
		if configKeys[k].kind != dropped {
			require.Contains(t, keys, k)
		}
	}
	require.Len(t, keys, len(configKeys)-1)
	again, _, err := ParseConfig(out, Options{})
	require.NoError(t, err)
	require.Equal(t, c, again)
}

// TestParseConfigForms: the alternative forms PEFT accepts.
func TestParseConfigForms(t *testing.T) {
	base := exampleConfig(t)
	parse := func(kv ...string) *Config {
		c, _, err := ParseConfig(withKeys(t, base, kv...), Options{})
		require.NoError(t, err, kv)
		return c
	}
	require.Equal(t, &ModuleSet{IsRegex: true, Regex: `.*\.q_proj`}, parse("target_modules", `".*\\.q_proj"`).TargetModules)
	require.Nil(t, parse("target_modules", `null`).TargetModules)
	c := parse("layers_to_transform", `1`, "layers_pattern", `"layers"`)
	require.Equal(t, []int{1}, c.LayersToTransform)
	require.Equal(t, []string{"layers"}, c.LayersPattern)
	require.Equal(t, []string{}, parse("layers_to_transform", `[]`, "layers_pattern", `""`).LayersPattern)
	require.Equal(t, InitWeights{Name: "gaussian"}, parse("init_lora_weights", `"gaussian"`).InitLoRAWeights)
	require.Equal(t, InitWeights{Bool: false}, parse("init_lora_weights", `false`).InitLoRAWeights)
	require.Equal(t, 11.313708498984761, parse("lora_alpha", `11.313708498984761`).LoRAAlpha)
	require.Equal(t, json.RawMessage(`[]`), parse("modules_to_save", `[]`).Kept["modules_to_save"])
	require.Equal(t, json.RawMessage(`{"loftq_bits":4}`), parse("loftq_config", `{"loftq_bits": 4}`).Kept["loftq_config"])
	c, warn, err := ParseConfig(withKeys(t, base, "runtime_config", `{"ephemeral_gpu_offload": false}`), Options{})
	require.NoError(t, err)
	require.Equal(t, []string{`key "runtime_config" is runtime-only and ignored, as PEFT ignores it`}, warn)
	require.NotContains(t, c.Kept, "runtime_config")
}

// TestParseConfigRefused: every feature the engine lacks is refused with
// ErrNotImplemented and the key's name; malformed values with ErrBadInput.
func TestParseConfigRefused(t *testing.T) {
	base := exampleConfig(t)
	notImpl := []struct{ key, value, want string }{
		{"modules_to_save", `["score"]`, `key "modules_to_save" is ["score"]`},
		{"use_qalora", `true`, `key "use_qalora" is true: it turns on QALoRA`},
		{"layer_replication", `[[0, 2]]`, `key "layer_replication"`},
		{"lora_ga_config", `{}`, `key "lora_ga_config" is {}: it turns on LoRA-GA`},
		{"target_parameters", `["experts.gate_up_proj"]`, `key "target_parameters"`},
		{"trainable_token_indices", `[]`, `key "trainable_token_indices" is []`},
		{"megatron_config", `{"tp": 2}`, `key "megatron_config"`},
		{"alora_invocation_tokens", `[1, 2]`, `key "alora_invocation_tokens"`},
		{"velora_config", `{"num_groups": 64}`, `key "velora_config"`},
		{"monteclora_config", `{}`, ""}, // {} is off in Python
		{"use_bdlora", `{"nblocks": 2}`, `key "use_bdlora"`},
		{"arrow_config", `{"top_k": 3}`, `key "arrow_config"`},
		{"kasa_config", `{"r": 2}`, `key "kasa_config"`},
		{"init_lora_weights", `"pissa_niter_4"`, `key "init_lora_weights" is "pissa_niter_4": that initialisation rewrites the base weight`},
		{"init_lora_weights", `"olora"`, `rewrites the base weight`},
		{"init_lora_weights", `"loftq"`, `rewrites the base weight`},
		{"init_lora_weights", `"lora_ga"`, `rewrites the base weight`},
		{"init_lora_weights", `"mica"`, `MiCA freezes lora_B`},
		{"peft_type", `"ADALORA"`, `key "peft_type" is "ADALORA": only "LORA" adapters are supported`},
		{"lora_dropout", `1`, `key "lora_dropout" is 1`},
		{"merge_weights", `false`, `unknown key "merge_weights" (a newer PEFT's?`},
	}
	for _, c := range notImpl {
		_, _, err := ParseConfig(withKeys(t, base, c.key, c.value), Options{})
		if c.want == "" {
			require.NoError(t, err, c.key)
			continue
		}
		require.ErrorIs(t, err, lora.ErrNotImplemented, c.key)
		require.ErrorContains(t, err, "peft: adapter_config.json: ")
		require.ErrorContains(t, err, c.want)
	}
	bad := []struct {
		kv   []string
		want string
	}{
		{[]string{"use_dora", `true`, "lora_bias", `true`}, `keys "use_dora" and "lora_bias" are both true: PEFT refuses lora_bias with DoRA`},
		{[]string{"lora_bias", `true`, "init_lora_weights", `"gaussian"`}, `PEFT allows lora_bias only with init_lora_weights true or false`},
		{[]string{"r", `8.0`}, `key "r" is 8.0, want an integer`},
		{[]string{"r", `0`}, `key "r" is 0, want a rank ≥ 1`},
		{[]string{"r", `"8"`}, `key "r" is "8", want an integer`},
		{[]string{"lora_alpha", `true`}, `key "lora_alpha" is true, want a number`},
		{[]string{"use_rslora", `1`}, `key "use_rslora" is 1, want true or false`},
		{[]string{"use_dora", `null`}, `key "use_dora" is null, want true or false`},
		{[]string{"bias", `"boft_only"`}, `key "bias" is "boft_only"`},
		{[]string{"lora_dropout", `-0.1`}, `key "lora_dropout" is -0.1, want a probability in [0, 1)`},
		{[]string{"task_type", `"CHAT"`}, `key "task_type" is "CHAT"`},
		{[]string{"target_modules", `[1]`}, `key "target_modules" is [1]`},
		{[]string{"target_modules", `"(?<!x)q"`}, `key "target_modules": "(?<!x)q" is not a regular expression Go's RE2 accepts`},
		{[]string{"rank_pattern", `{"q_proj": 0}`}, `key "rank_pattern" gives "q_proj" rank 0`},
		{[]string{"rank_pattern", `{"q_proj": 2.5}`}, `key "rank_pattern[\"q_proj\"]" is 2.5, want an integer`},
		{[]string{"rank_pattern", `null`}, `key "rank_pattern" is null, want an object`},
		{[]string{"alpha_pattern", `{"(": 2}`}, `key "alpha_pattern": key "(": "(.*\\.)?(()$"`},
		{[]string{"layers_pattern", `"layers"`}, `key "layers_pattern" needs "layers_to_transform"`},
		{[]string{"target_modules", `"q_proj"`, "layers_to_transform", `[0]`}, `key "layers_to_transform" cannot be used when "target_modules" is a regular expression`},
		{[]string{"init_lora_weights", `"kaiming"`}, `key "init_lora_weights" is "kaiming", which PEFT does not know`},
		{[]string{"peft_type", ""}, `key "peft_type" is missing`},
	}
	for _, c := range bad {
		_, _, err := ParseConfig(withKeys(t, base, c.kv...), Options{})
		require.ErrorIs(t, err, lora.ErrBadInput, c.kv)
		require.ErrorContains(t, err, c.want)
	}
	for in, want := range map[string]string{
		`[]`:            "the config is [], want a JSON object",
		`{"r": 8,}`:     "not a valid JSON config",
		`{"r": 8`:       "not a valid JSON config: unexpected EOF",
		``:              "not a valid JSON config",
		`{"r":1,"r":2}`: `duplicate key "r"`,
	} {
		_, _, err := ParseConfig([]byte(in), Options{})
		require.ErrorIs(t, err, lora.ErrBadInput, in)
		require.ErrorContains(t, err, want, in)
	}
}

// TestParseConfigUnknownKeys: unknown keys are errors by default, all
// named; with AllowUnknownKeys they are warnings, kept and written back.
func TestParseConfigUnknownKeys(t *testing.T) {
	b := withKeys(t, exampleConfig(t), "zeta", `1`, "alpha_x", `{"a": [true]}`)
	_, _, err := ParseConfig(b, Options{})
	require.ErrorIs(t, err, lora.ErrNotImplemented)
	require.ErrorContains(t, err, `unknown keys "alpha_x", "zeta"`)
	c, warn, err := ParseConfig(b, Options{AllowUnknownKeys: true})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{`unknown key "zeta" is kept but not applied`, `unknown key "alpha_x" is kept but not applied`}, warn)
	require.Equal(t, json.RawMessage(`{"a":[true]}`), c.Unknown["alpha_x"])
	out, err := MarshalConfig(c)
	require.NoError(t, err)
	again, _, err := ParseConfig(out, Options{AllowUnknownKeys: true})
	require.NoError(t, err)
	require.Equal(t, c, again)
}

// TestMarshalConfigKeepsPatternOrder: rank_pattern order decides which key
// wins, so it is written as the Config has it, not sorted.
func TestMarshalConfigKeepsPatternOrder(t *testing.T) {
	c := DefaultConfig()
	c.RankPattern = []RankPattern{{"q_proj", 2}, {"model.layers.0.self_attn.q_proj", 4}}
	out, err := MarshalConfig(&c)
	require.NoError(t, err)
	again, _, err := ParseConfig(out, Options{})
	require.NoError(t, err)
	require.Equal(t, c.RankPattern, again.RankPattern)
	r, _, err := again.RankAlpha("model.layers.0.self_attn.q_proj")
	require.NoError(t, err)
	require.Equal(t, 2, r)
	c.Kept["use_qalora"] = json.RawMessage("true")
	_, err = MarshalConfig(&c)
	require.ErrorIs(t, err, lora.ErrNotImplemented)
}
