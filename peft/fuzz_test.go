package peft

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/safetensors"
)

// FuzzParseConfig: no input panics the config parser or the matching
// rules, and whatever parses writes back to a config that parses equal.
func FuzzParseConfig(f *testing.F) {
	for _, e := range examples() {
		b, err := os.ReadFile(filepath.Join(e.dir, ConfigName))
		require.NoError(f, err)
		f.Add(b)
	}
	for _, s := range []string{
		`{"peft_type": "LORA"}`,
		`{"peft_type": "LORA", "target_modules": ".*\\.q_proj", "rank_pattern": {"q": 2, "k": 3}, "alpha_pattern": {"a)|(b": 1.5e-3}}`,
		`{"peft_type": "LORA", "layers_to_transform": 3, "layers_pattern": ["h", "layers"], "target_modules": ["c_attn"], "lora_alpha": 1e300}`,
		`{"peft_type": "LORA", "x": [[[{"y": null}]]], "exclude_modules": "", "init_lora_weights": "gaussian", "lora_dropout": 0.1}`,
		`{"peft_type": "LORA", "lora_alpha": -0, "task_type": "SEQ_CLS", "base_model_name_or_path": "\u00e9\ud83d\ude00"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _, err := ParseConfig(data, Options{AllowUnknownKeys: true})
		if err != nil {
			return
		}
		for _, p := range []string{"model.layers.0.self_attn.q_proj", "transformer.h.3.attn.c_attn", "q"} {
			if _, err := c.Targets(p); err != nil {
				t.Fatalf("Targets(%q) of a valid config: %v", p, err)
			}
			if _, err := c.Scale(p); err != nil {
				t.Fatalf("Scale(%q) of a valid config: %v", p, err)
			}
		}
		out, err := MarshalConfig(c)
		if err != nil {
			t.Fatalf("MarshalConfig of a parsed config: %v", err)
		}
		again, _, err := ParseConfig(out, Options{AllowUnknownKeys: true})
		if err != nil {
			t.Fatalf("re-parsing %s: %v", out, err)
		}
		require.Equal(t, c, again)
	})
}

// FuzzLoadWeights: no weights file panics the loader, whatever the
// safetensors bytes, under each example's config.
func FuzzLoadWeights(f *testing.F) {
	var cfgs []*Config
	for _, e := range examples() {
		b, err := os.ReadFile(filepath.Join(e.dir, WeightsName))
		require.NoError(f, err)
		f.Add(b)
		cb, err := os.ReadFile(filepath.Join(e.dir, ConfigName))
		require.NoError(f, err)
		c, _, err := ParseConfig(cb, Options{})
		require.NoError(f, err)
		cfgs = append(cfgs, c)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := safetensors.Parse(data)
		if err != nil {
			return
		}
		for _, c := range cfgs {
			a, err := fromTensors(c, st)
			if err != nil {
				continue
			}
			if err := a.Validate(); err != nil {
				t.Fatalf("a loaded adapter does not validate: %v", err)
			}
		}
	})
}
