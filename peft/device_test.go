package peft

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk/vktest"
)

func toFloat64(xs []float32) []float64 { return ref.FromFloat32(xs) }

// TestUploadLoRALinear: a loaded plain-LoRA module becomes a LoRALinear
// whose Projection has PEFT's scale (rank_pattern's r, alpha_pattern's
// alpha), and whose forward matches the float64 reference built from the
// host tensors.
func TestUploadLoRALinear(t *testing.T) {
	f := vktest.NewFixture(t)
	eng, err := lora.NewEngine(f.Dev, lora.Options{})
	require.NoError(t, err)
	a, err := Load("testdata/llama-lora-f32")
	require.NoError(t, err)
	d := dtype.F32
	for _, path := range []string{"model.layers.1.self_attn.q_proj", "model.layers.0.self_attn.v_proj"} {
		m := a.Modules[path]
		dm, err := m.Upload(f.Dev, d)
		require.NoError(t, err)
		t.Cleanup(dm.Release)
		rp := &ref.Proj{W: f.Random(d, m.Out()*m.In(), 0.3), A: toFloat64(m.A.Data), B: toFloat64(m.B.Data),
			Out: m.Out(), In: m.In(), R: m.R, S: m.Scale}
		w := f.Upload(d, rp.W, m.Out(), m.In())
		l, err := dm.LoRALinear(lora.Weight{Dense: w}, nil)
		require.NoError(t, err)
		require.Equal(t, []any{m.R, m.Alpha, m.UseRSLoRA, m.Dropout, false}, []any{l.R, l.Alpha, l.UseRSLoRA, l.Dropout, l.BiasTrainable})
		require.Nil(t, l.Bias)
		_, err = lora.GetLoRAParameters(l) // with the example's lora_dropout 0.05
		require.NoError(t, err)
		// Dropout makes the forward random: compare the deterministic one.
		l.Dropout = 0
		p, err := lora.GetLoRAParameters(l)
		require.NoError(t, err)
		require.Same(t, dm.A, p.A)
		require.Same(t, dm.B, p.B)
		require.Equal(t, m.Scale, p.Scale, path)

		x := f.Random(d, 3*m.In(), 1)
		rec := f.Recorder()
		y, err := eng.MatmulLoRA(rec, f.Upload(d, x, 3, m.In()), p, nil)
		require.NoError(t, err)
		t.Cleanup(y.Release)
		require.NoError(t, rec.Submit())
		vktest.ExpectClose(t, path, f.Download(y), ref.LinearForward(x, 3, rp), m.Out(), 2*ref.Tolerance(d).Product)
	}
}

// TestLoRALinearFields: DoRA, lora_B bias and trained base biases reach
// the LoRALinear; the adapter's trained base bias replaces the model's.
func TestLoRALinearFields(t *testing.T) {
	f := vktest.NewFixture(t)
	a, err := Load("testdata/dora-bf16")
	require.NoError(t, err)
	d := dtype.BF16
	m := a.Modules["model.layers.0.self_attn.o_proj"]
	dm, err := m.Upload(f.Dev, d)
	require.NoError(t, err)
	t.Cleanup(dm.Release)
	w := f.Upload(d, f.Random(d, 64, 1), 8, 8)
	modelBias := f.Upload(d, f.Random(d, 8, 1), 8)
	l, err := dm.LoRALinear(lora.Weight{Dense: w}, modelBias)
	require.NoError(t, err)
	require.Same(t, dm.BaseBias, l.Bias)
	require.Same(t, dm.Magnitude, l.Magnitude)
	require.True(t, l.BiasTrainable)
	require.True(t, l.UseRSLoRA)
	require.Nil(t, l.LoRABias)

	b, err := Load("testdata/lorabias-f16")
	require.NoError(t, err)
	mb := b.Modules["model.layers.1.mlp.down_proj"]
	mb.BaseBias = nil // a base layer without a saved bias keeps the model's
	dmb, err := mb.Upload(f.Dev, dtype.F16)
	require.NoError(t, err)
	t.Cleanup(dmb.Release)
	wb := f.Upload(dtype.F16, f.Random(dtype.F16, 8*12, 1), 8, 12)
	modelBiasB := f.Upload(dtype.F16, f.Random(dtype.F16, 8, 1), 8)
	lb, err := dmb.LoRALinear(lora.Weight{Dense: wb}, modelBiasB)
	require.NoError(t, err)
	require.Same(t, modelBiasB, lb.Bias)
	require.Same(t, dmb.LoRABias, lb.LoRABias)
	require.True(t, lb.BiasTrainable)
	lb, err = dmb.LoRALinear(lora.Weight{Dense: wb}, nil)
	require.NoError(t, err)
	require.False(t, lb.BiasTrainable, "no bias to train")
}

func TestLoRALinearErrors(t *testing.T) {
	f := vktest.NewFixture(t)
	a, err := Load("testdata/llama-lora-f32")
	require.NoError(t, err)
	m := a.Modules["model.layers.0.self_attn.v_proj"] // [out 4, in 8]
	dm, err := m.Upload(f.Dev, dtype.F32)
	require.NoError(t, err)
	t.Cleanup(dm.Release)
	_, err = dm.LoRALinear(lora.Weight{Dense: f.Upload(dtype.F32, make([]float64, 32), 8, 4)}, nil)
	require.ErrorIs(t, err, lora.ErrBadInput)
	require.ErrorContains(t, err, "base weight [8 4] is not [out=4, in=8] for lora_A f32[4 8] and lora_B f32[4 4]")
	m.FanInFanOut = true
	_, err = dm.LoRALinear(lora.Weight{Dense: f.Upload(dtype.F32, make([]float64, 32), 8, 4)}, nil)
	require.ErrorContains(t, err, "fan_in_fan_out: transpose the stored [in, out] weight")
	m.FanInFanOut = false
	_, err = dm.LoRALinear(lora.Weight{Dense: f.Upload(dtype.BF16, make([]float64, 32), 4, 8)}, nil)
	require.ErrorContains(t, err, "adapter uploaded as f32, base weight is bf16")
	_, err = dm.LoRALinear(lora.Weight{}, nil)
	require.ErrorContains(t, err, "base weight is nil or released")
	_, err = m.Upload(f.Dev, dtype.U8)
	require.ErrorIs(t, err, lora.ErrBadInput)
	_, err = m.Upload(nil, dtype.F32)
	require.ErrorIs(t, err, lora.ErrBadInput)
	dm.Release()
	dm.Release() // idempotent
	_, err = dm.LoRALinear(lora.Weight{Dense: f.Upload(dtype.F32, make([]float64, 32), 4, 8)}, nil)
	require.ErrorContains(t, err, "device module is nil or released")
}

// TestDownload: trained tensors come back in each tensor's stored dtype,
// and an adapter of them saves and loads.
func TestDownload(t *testing.T) {
	f := vktest.NewFixture(t)
	a, err := Load("testdata/dora-bf16")
	require.NoError(t, err)
	ms, err := a.Upload(f.Dev, dtype.F32) // train in f32, stored bf16
	require.NoError(t, err)
	t.Cleanup(ms.Release)
	require.Len(t, ms, 2)

	// Unchanged on the device: the download is the adapter itself.
	same, err := ms.Download(a)
	require.NoError(t, err)
	require.Equal(t, a, same)

	// "Train" one module: a new lora_B, not representable in bf16.
	p := "model.layers.1.self_attn.o_proj"
	trained := make([]float32, 16)
	for i := range trained {
		trained[i] = 1.0/3 + float32(i)
	}
	require.NoError(t, ms[p].B.Upload(trained))
	got, err := ms.Download(a)
	require.NoError(t, err)
	m := got.Modules[p]
	require.Equal(t, dtype.BF16, m.B.DType)
	for i, x := range trained {
		require.Equal(t, dtype.Round(dtype.BF16, x), m.B.Data[i])
	}
	require.NotEqual(t, a.Modules[p].B.Data, m.B.Data, "the input adapter is not changed")
	require.Equal(t, a.Modules[p].Magnitude, m.Magnitude)
	dir := t.TempDir()
	require.NoError(t, Save(dir, got))
	back, err := Load(dir)
	require.NoError(t, err)
	require.Equal(t, got, back)
	ms.Release()
	ms.Release()
}
