package peft

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/vk/vktest"
)

// TestSaveReproducesExamples: Save(Load(dir)) writes both files of each
// committed adapter back byte for byte.
func TestSaveReproducesExamples(t *testing.T) {
	for _, e := range examples() {
		a, err := Load(e.dir)
		require.NoError(t, err)
		out := filepath.Join(t.TempDir(), "saved")
		require.NoError(t, Save(out, a))
		for _, f := range []string{ConfigName, WeightsName} {
			want, err := os.ReadFile(filepath.Join(e.dir, f))
			require.NoError(t, err)
			got, err := os.ReadFile(filepath.Join(out, f))
			require.NoError(t, err)
			require.Equal(t, want, got, "%s/%s", e.dir, f)
		}
	}
}

// TestSaveLoadRoundTrip: Load(Save(a)) == a for adapters with random
// values in every dtype, NaNs with payloads included.
func TestSaveLoadRoundTrip(t *testing.T) {
	rng := vktest.RNG(t)
	for _, e := range examples() {
		a := e.adapter(t)
		for _, m := range a.Modules {
			for _, x := range []*Tensor{m.A, m.B, m.LoRABias, m.Magnitude, m.BaseBias} {
				if x == nil {
					continue
				}
				for i := range x.Data {
					x.Data[i] = dtype.Round(x.DType, float32(rng.NormFloat64()))
				}
			}
		}
		dir := t.TempDir()
		require.NoError(t, Save(dir, a))
		got, err := Load(dir)
		require.NoError(t, err)
		require.Equal(t, a, got, e.dir)
	}
	// NaN != NaN defeats Equal: compare the bits of a NaN-holding tensor.
	a, err := Load("testdata/lorabias-f16")
	require.NoError(t, err)
	m := a.Modules["model.layers.1.mlp.down_proj"]
	m.A.Data[0] = f16ToFloat32Exact(0x7c01) // signalling NaN with payload
	m.A.Data[1] = f16ToFloat32Exact(0xfe3f)
	dir := t.TempDir()
	require.NoError(t, Save(dir, a))
	got, err := Load(dir)
	require.NoError(t, err)
	for i := range 2 {
		require.Equal(t, math.Float32bits(m.A.Data[i]), math.Float32bits(got.Modules[m.Path].A.Data[i]))
	}
}

// TestSaveValidates: Save refuses an adapter PEFT would load differently
// from what it says, and writes nothing.
func TestSaveValidates(t *testing.T) {
	const q0 = "model.layers.0.self_attn.q_proj"
	for _, c := range []struct {
		name string
		edit func(a *Adapter)
		want string
	}{
		{"rank", func(a *Adapter) { a.Modules[q0].R = 3 }, "r 3 and alpha 8 differ from the config's 4 and 8"},
		{"alpha", func(a *Adapter) { a.Modules[q0].Alpha = 1 }, "r 4 and alpha 1 differ"},
		{"scale", func(a *Adapter) { a.Modules[q0].Scale = 1 }, "scale 1 differs from PEFT's 2"},
		{"dropout", func(a *Adapter) { a.Modules[q0].Dropout = 0 }, "flags (use_rslora false, dropout 0"},
		{"config rank", func(a *Adapter) { a.Config.R = 8 }, "r 4 and alpha 8 differ from the config's 8 and 8"},
		{"A empty", func(a *Adapter) { a.Modules[q0].A = zeros(dtype.F32, 4, 0) }, "shape [4 0] has a dimension < 1"},
		{"A rank", func(a *Adapter) { a.Modules[q0].A = zeros(dtype.F32, 3, 8) }, "lora_A [3 8] and lora_B [8 4] must be [r=4, in]"},
		{"A data", func(a *Adapter) { a.Modules[q0].A.Data = a.Modules[q0].A.Data[1:] }, "shape [4 8] holds 32 values, Data has 31"},
		{"A dtype", func(a *Adapter) { a.Modules[q0].A.DType = dtype.U8 }, "dtype u8 is not f32, f16 or bf16"},
		{"lora_B bias", func(a *Adapter) { a.Modules[q0].LoRABias = zeros(dtype.F32, 8) }, "lora_B bias is set but the config does not have lora_bias"},
		{"magnitude", func(a *Adapter) { a.Modules[q0].Magnitude = zeros(dtype.F32, 8) }, "magnitude is set but the config does not have use_dora"},
		{"untargeted", func(a *Adapter) {
			m := *a.Modules[q0]
			m.Path = "model.layers.0.mlp.up_proj"
			a.Modules[m.Path] = &m
		}, `module "model.layers.0.mlp.up_proj" is not selected by the config`},
		{"path", func(a *Adapter) { a.Modules["x"] = a.Modules[q0] }, `Modules["x"] is nil or has another Path`},
		{"other biases", func(a *Adapter) { a.OtherBiases = map[string]*Tensor{"model.norm": zeros(dtype.F32, 8)} }, `OtherBiases are saved only with bias "all"`},
		{"kept key", func(a *Adapter) { a.Config.Kept["r"] = json.RawMessage("1") }, `Config.Kept holds "r", which is not a kept key`},
		{"dora and lora_bias", func(a *Adapter) { a.Config.UseDoRA, a.Config.LoRABias = true, true }, "PEFT refuses lora_bias with DoRA"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := Load("testdata/llama-lora-f32")
			require.NoError(t, err)
			c.edit(a)
			dir := filepath.Join(t.TempDir(), "out")
			err = Save(dir, a)
			require.ErrorIs(t, err, lora.ErrBadInput)
			require.ErrorContains(t, err, "peft: Save "+dir+": ")
			require.ErrorContains(t, err, c.want)
			_, statErr := os.Stat(dir)
			require.True(t, os.IsNotExist(statErr), "Save wrote %s", dir)
		})
	}
	a, err := Load("testdata/lorabias-f16")
	require.NoError(t, err)
	a.OtherBiases["model.layers.1.mlp.down_proj.lora_B"] = zeros(dtype.F16, 8)
	require.ErrorContains(t, Save(t.TempDir(), a), "would load as another tensor")
	require.ErrorIs(t, Save(t.TempDir(), nil), lora.ErrBadInput)
}

// TestNewModule: a fresh module has PEFT's shapes, derived values and
// flags, and an adapter of them round-trips.
func TestNewModule(t *testing.T) {
	c := DefaultConfig()
	c.R, c.LoRAAlpha, c.UseRSLoRA, c.UseDoRA, c.Bias = 16, 32, true, true, BiasAll
	c.TargetModules = &ModuleSet{Names: []string{"gate_proj"}}
	c.RankPattern = []RankPattern{{"gate_proj", 4}}
	m, err := c.NewModule("model.layers.3.mlp.gate_proj", 10, 24, dtype.BF16)
	require.NoError(t, err)
	require.Equal(t, []any{4, 32.0, 16.0, true, true, true}, []any{m.R, m.Alpha, m.Scale, m.UseRSLoRA, m.UseDoRA, m.BiasTrainable})
	require.Equal(t, []int{4, 10}, m.A.Shape)
	require.Equal(t, []int{24, 4}, m.B.Shape)
	require.Equal(t, []int{24}, m.Magnitude.Shape)
	require.Equal(t, 10, m.In())
	require.Equal(t, 24, m.Out())
	a := &Adapter{Config: c, Modules: map[string]*Module{m.Path: m}}
	dir := t.TempDir()
	require.NoError(t, Save(dir, a))
	got, err := Load(dir)
	require.NoError(t, err)
	require.Equal(t, a, got)
	_, err = c.NewModule("model.layers.3.mlp.up_proj", 10, 24, dtype.BF16)
	require.ErrorContains(t, err, "is not selected by the config")
	_, err = c.NewModule("model.layers.3.mlp.gate_proj", 0, 24, dtype.BF16)
	require.ErrorIs(t, err, lora.ErrBadInput)
}
