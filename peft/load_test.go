package peft

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/safetensors"
)

// TestLoadExamples: each committed adapter loads to exactly the values it
// was built from, with PEFT's per-module r, alpha and scale.
func TestLoadExamples(t *testing.T) {
	for _, e := range examples() {
		a, err := Load(e.dir)
		require.NoError(t, err, e.dir)
		require.Equal(t, e.adapter(t), a, e.dir)
	}
	a, err := Load("testdata/llama-lora-f32")
	require.NoError(t, err)
	for path, want := range map[string][3]float64{ // r, alpha, scale
		"model.layers.0.self_attn.q_proj": {4, 8, 2},
		"model.layers.0.self_attn.v_proj": {4, 16, 4},
		"model.layers.1.self_attn.q_proj": {2, 8, 4},
		"model.layers.1.self_attn.v_proj": {4, 16, 4},
	} {
		m := a.Modules[path]
		require.Equal(t, want, [3]float64{float64(m.R), m.Alpha, m.Scale}, path)
		require.Equal(t, 0.05, m.Dropout)
	}
	d, err := Load("testdata/dora-bf16")
	require.NoError(t, err)
	m := d.Modules["model.layers.1.self_attn.o_proj"]
	require.Equal(t, 4/1.4142135623730951, m.Scale) // rsLoRA: alpha/√r
	require.True(t, m.UseDoRA && m.BiasTrainable)
	require.Equal(t, []int{8}, m.Magnitude.Shape)
	require.Equal(t, dtype.BF16, m.Magnitude.DType)
}

// withWeights writes the config of example dir and the tensors of f,
// after edit changes them, to a new directory.
func withWeights(t *testing.T, dir string, edit func(f *safetensors.File)) string {
	t.Helper()
	out := copyDir(t, dir)
	f, err := safetensors.ReadFile(filepath.Join(dir, WeightsName))
	require.NoError(t, err)
	edit(f)
	require.NoError(t, safetensors.WriteFile(filepath.Join(out, WeightsName), f))
	return out
}

func put(t *testing.T, f *safetensors.File, key, dt string, shape ...int) {
	t.Helper()
	size, _ := safetensors.DTypeSize(dt)
	require.NoError(t, f.Put(key, dt, shape, make([]byte, numel(shape)*size)))
}

// TestLoadErrors: wrong tensors are refused with the key, the file and
// the shapes in the message.
func TestLoadErrors(t *testing.T) {
	const (
		llama = "testdata/llama-lora-f32"
		dora  = "testdata/dora-bf16"
		q1    = keyPrefix + "model.layers.1.self_attn.q_proj"
		q0    = keyPrefix + "model.layers.0.self_attn.q_proj"
		o0    = keyPrefix + "model.layers.0.self_attn.o_proj"
	)
	for _, c := range []struct {
		name, dir string
		edit      func(f *safetensors.File)
		want      string
		notImpl   bool
	}{
		{"rank from rank_pattern", llama, func(f *safetensors.File) { put(t, f, q1+suffixA, "F32", 4, 8) },
			`tensor "` + q1 + `.lora_A.weight" has shape [4 8], want [r=2, in] (r from rank_pattern key "model.layers.1.self_attn.q_proj")`, false},
		{"lora_B rank", llama, func(f *safetensors.File) { put(t, f, q0+suffixB, "F32", 8, 3) },
			`tensor "` + q0 + `.lora_B.weight" has shape [8 3], want [out, r=4] (r from "r")`, false},
		{"conv layer", llama, func(f *safetensors.File) { put(t, f, q0+suffixA, "F32", 4, 8, 1, 1) },
			"a LoRA Conv layer is not supported", false},
		{"lora_B missing", llama, func(f *safetensors.File) { delete(f.Tensors, q0+suffixB) },
			`module model.layers.0.self_attn.q_proj has ["` + q0 + `.lora_A.weight"] but not both`, false},
		{"lora_B bias without lora_bias", llama, func(f *safetensors.File) { put(t, f, q0+suffixLoRABias, "F32", 8) },
			`tensor "` + q0 + `.lora_B.bias" is present but the config does not have "lora_bias"`, false},
		{"base bias with bias none", llama, func(f *safetensors.File) { put(t, f, q0+suffixBaseBias, "F32", 8) },
			`tensor "` + q0 + `.base_layer.bias" is present but the config does not have bias "all" or "lora_only"`, false},
		{"magnitude shape", dora, func(f *safetensors.File) { put(t, f, o0+suffixMagnitude, "BF16", 4) },
			`tensor "` + o0 + `.lora_magnitude_vector" has shape [4], want [out=8] (lora_B [8 2])`, false},
		{"magnitude missing", dora, func(f *safetensors.File) { delete(f.Tensors, o0+suffixMagnitude) },
			`module model.layers.0.self_attn.o_proj has no "` + o0 + `.lora_magnitude_vector" but the config has "use_dora"`, false},
		{"both magnitude keys", dora, func(f *safetensors.File) { put(t, f, o0+suffixMagWeight, "BF16", 8) },
			"are both the lora_magnitude_vector of module model.layers.0.self_attn.o_proj", false},
		{"untargeted module", llama, func(f *safetensors.File) {
			put(t, f, keyPrefix+"model.layers.0.mlp.up_proj"+suffixA, "F32", 4, 8)
			put(t, f, keyPrefix+"model.layers.0.mlp.up_proj"+suffixB, "F32", 8, 4)
		}, `module "model.layers.0.mlp.up_proj" is not selected by the config`, false},
		{"no prefix", llama, func(f *safetensors.File) { put(t, f, "model.x.lora_A.weight", "F32", 4, 8) },
			`tensor "model.x.lora_A.weight" does not start with "base_model.model."`, false},
		{"embedding", llama, func(f *safetensors.File) { put(t, f, keyPrefix+"model.embed_tokens.lora_embedding_A", "F32", 4, 8) },
			"is a LoRA Embedding's, which is not implemented", true},
		{"other LoRA parameter", llama, func(f *safetensors.File) { put(t, f, q0+".lora_diag", "F32", 4) },
			"is not a parameter of a LoRA Linear", true},
		{"saved module", llama, func(f *safetensors.File) { put(t, f, keyPrefix+"score.weight", "F32", 2, 8) },
			`tensor "base_model.model.score.weight" is not part of a LoRA adapter`, true},
		{"f64", llama, func(f *safetensors.File) { put(t, f, q0+suffixA, "F64", 4, 8) },
			"has dtype F64; only F32, F16 and BF16 are supported", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := withWeights(t, c.dir, c.edit)
			_, err := Load(dir)
			require.ErrorContains(t, err, "peft: "+filepath.Join(dir, WeightsName)+": ")
			require.ErrorContains(t, err, c.want)
			if c.notImpl {
				require.ErrorIs(t, err, lora.ErrNotImplemented)
			} else {
				require.ErrorIs(t, err, lora.ErrBadInput)
			}
		})
	}
}

// TestLoadMagnitudeWeightSuffix: PEFT also loads DoRA's magnitude saved
// with ".weight"; Load accepts it and Save writes PEFT's usual key.
func TestLoadMagnitudeWeightSuffix(t *testing.T) {
	const dora = "testdata/dora-bf16"
	dir := withWeights(t, dora, func(f *safetensors.File) {
		for _, p := range []string{"model.layers.0.self_attn.o_proj", "model.layers.1.self_attn.o_proj"} {
			k := keyPrefix + p + suffixMagnitude
			f.Tensors[k+".weight"] = f.Tensors[k]
			delete(f.Tensors, k)
		}
	})
	a, err := Load(dir)
	require.NoError(t, err)
	want, err := Load(dora)
	require.NoError(t, err)
	require.Equal(t, want, a)
}

// TestLoadBadFiles: truncated, corrupt and missing files fail with the
// file's path, never a panic.
func TestLoadBadFiles(t *testing.T) {
	const llama = "testdata/llama-lora-f32"
	full, err := os.ReadFile(filepath.Join(llama, WeightsName))
	require.NoError(t, err)
	for _, n := range []int{0, 5, 8, 100, len(full) - 1} {
		dir := copyDir(t, llama)
		require.NoError(t, os.WriteFile(filepath.Join(dir, WeightsName), full[:n], 0o644))
		_, err := Load(dir)
		require.ErrorIs(t, err, lora.ErrBadInput, n)
		require.ErrorContains(t, err, filepath.Join(dir, WeightsName)+": safetensors: ", n)
	}
	dir := copyDir(t, llama)
	require.NoError(t, os.WriteFile(filepath.Join(dir, WeightsName), append(append([]byte{}, full...), 0), 0o644))
	_, err = Load(dir)
	require.ErrorContains(t, err, "the header promises")

	dir = copyDir(t, llama)
	require.NoError(t, os.WriteFile(filepath.Join(dir, ConfigName), []byte(`{"peft_type": "LORA", "r": 4`), 0o644))
	_, err = Load(dir)
	require.ErrorIs(t, err, lora.ErrBadInput)
	require.ErrorContains(t, err, "peft: "+filepath.Join(dir, ConfigName)+": not a valid JSON config")

	dir = copyDir(t, llama)
	require.NoError(t, os.Remove(filepath.Join(dir, WeightsName)))
	_, err = Load(dir)
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.ErrorContains(t, err, WeightsName)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "adapter_model.bin"), []byte("PK"), 0o644))
	_, err = Load(dir)
	require.ErrorIs(t, err, lora.ErrNotImplemented)
	require.ErrorContains(t, err, "only adapter_model.bin, a torch pickle, is there")
	_, err = Load(t.TempDir())
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.ErrorContains(t, err, ConfigName)
}

// TestLoadWithWarnings: unknown keys load under AllowUnknownKeys and come
// back as warnings.
func TestLoadWithWarnings(t *testing.T) {
	dir := copyDir(t, "testdata/llama-lora-f32")
	cfg, err := os.ReadFile(filepath.Join(dir, ConfigName))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, ConfigName), withKeys(t, cfg, "future_key", `"x"`), 0o644))
	_, err = Load(dir)
	require.ErrorIs(t, err, lora.ErrNotImplemented)
	require.ErrorContains(t, err, `unknown key "future_key"`)
	a, warn, err := LoadWith(dir, Options{AllowUnknownKeys: true})
	require.NoError(t, err)
	require.Equal(t, []string{`unknown key "future_key" is kept but not applied`}, warn)
	require.Len(t, a.Modules, 4)
}
