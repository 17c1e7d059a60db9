package lora

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk/vktest"
)

// gatedMLP makes a PEFT gated MLP (gate, up [i, h]; down [h, i]) with
// adapters of ranks 3, 5 (rsLoRA) and 2, and its reference projections.
func (f *fixture) gatedMLP(d dtype.DType, h, i int, act string) (*GatedMLP, [3]*ref.Proj) {
	g, rg := f.linear(d, i, h, 3, 6, false)
	u, ru := f.linear(d, i, h, 5, 6, true)
	dn, rd := f.linear(d, h, i, 2, 1, false)
	return &GatedMLP{Gate: g, Up: u, Down: dn, HiddenAct: act}, [3]*ref.Proj{rg, ru, rd}
}

func TestApplyLoRAMLPActivation(t *testing.T) {
	f := newFixture(t)
	mlp, _ := f.gatedMLP(dtype.F32, 6, 10, "")
	type apply func(*Engine, *GatedMLP) (*MLP, error)
	generic, swiglu, geglu := apply(ApplyLoRAMLP), apply(ApplyLoRAMLPSwiGLU), apply(ApplyLoRAMLPGEGLU)
	for _, c := range []struct {
		fn     apply
		act    string
		want   Activation
		errMsg string
	}{
		{generic, "silu", SwiGLU, ""},
		{generic, "swish", SwiGLU, ""},
		{generic, "gelu", GEGLU, ""},
		{generic, "gelu_pytorch_tanh", GEGLUTanh, ""},
		{generic, "gelu_new", GEGLUTanh, ""},
		{generic, "relu", 0, `ApplyLoRAMLP: activation: unsupported hidden_act "relu"`},
		{generic, "", 0, "hidden_act"},
		{swiglu, "silu", SwiGLU, ""},
		{swiglu, "gelu", 0, `ApplyLoRAMLPSwiGLU: hidden_act "gelu" gives geglu, not a SiLU model`},
		{swiglu, "gelu_pytorch_tanh", 0, "not a SiLU model"},
		{geglu, "gelu", GEGLU, ""},
		{geglu, "gelu_pytorch_tanh", GEGLUTanh, ""},
		{geglu, "gelu_fast", GEGLUTanh, ""},
		{geglu, "silu", 0, `ApplyLoRAMLPGEGLU: hidden_act "silu" gives swiglu, not a GELU model`},
		{geglu, "quick_gelu", 0, "quick_gelu"},
	} {
		m := *mlp
		m.HiddenAct = c.act
		l, err := c.fn(f.eng, &m)
		if c.errMsg != "" {
			require.ErrorIs(t, err, ErrBadInput, c.act)
			require.ErrorContains(t, err, c.errMsg)
			continue
		}
		require.NoError(t, err, c.act)
		require.Equal(t, c.want, l.Act, c.act)
		require.Same(t, f.eng, l.Engine)
	}
	_, err := ApplyLoRAMLP(nil, mlp)
	require.ErrorIs(t, err, ErrBadInput)
}

// TestApplyLoRAMLPRuns checks the built layer end to end: a Gemma-style
// tanh-GELU MLP with mixed alpha/r and rsLoRA scales, one projection merged.
func TestApplyLoRAMLPRuns(t *testing.T) {
	f := newFixture(t)
	d := dtype.F32
	const m, h, i = 5, 12, 20
	mlp, rp := f.gatedMLP(d, h, i, "gelu_pytorch_tanh")
	mlp.Down.Merged = true
	rp[2].R, rp[2].A = 0, nil
	l, err := ApplyLoRAMLP(f.eng, mlp)
	require.NoError(t, err)
	x, gy := f.Random(d, m*h, 1), f.Random(d, m*h, 1)
	rec := f.Recorder()
	y, saved, err := l.Forward(rec, f.Upload(d, x, m, h))
	require.NoError(t, err)
	defer saved.Release()
	rec.Barrier()
	dx, grads, err := l.Backward(rec, saved, f.Upload(d, gy, m, h))
	require.NoError(t, err)
	f.Keep(y, dx)
	f.keepGrads(grads[:]...)
	require.NoError(t, rec.Submit())
	wy, _, _ := ref.MLPForward(x, m, rp[0], rp[1], rp[2], GEGLUTanh)
	wdx, dg, du, dd := ref.MLPBackward(x, gy, m, rp[0], rp[1], rp[2], GEGLUTanh)
	bound := ref.Tolerance(d).Layer
	vktest.ExpectClose(t, "Y", f.Download(y), wy, h, bound)
	vktest.ExpectClose(t, "dX", f.Download(dx), wdx, h, bound)
	f.checkGrads("gate", grads[0], dg, rp[0], bound)
	f.checkGrads("up", grads[1], du, rp[1], bound)
	f.checkGrads("down", grads[2], dd, rp[2], bound)
}

func TestApplyLoRAMLPShapeErrors(t *testing.T) {
	f := newFixture(t)
	d := dtype.F32
	mlp, _ := f.gatedMLP(d, 6, 10, "silu")
	wrongUp, _ := f.linear(d, 9, 6, 5, 6, false)
	m := *mlp
	m.Up = wrongUp
	_, err := ApplyLoRAMLPSwiGLU(f.eng, &m)
	require.ErrorIs(t, err, ErrBadInput)
	require.ErrorContains(t, err, "up f32[9 6]")
	m = *mlp
	up := *mlp.Up
	up.B = mlp.Gate.A
	m.Up = &up
	_, err = ApplyLoRAMLP(f.eng, &m)
	require.ErrorContains(t, err, "lora: ApplyLoRAMLP: up_proj: lora_B f32[3 6] must be [out=10, r=5]")
}

func TestApplyLoRAAttention(t *testing.T) {
	f := newFixture(t)
	d := dtype.BF16
	const h, hq, hkv = 16, 16, 8
	q, rq := f.linear(d, hq, h, 4, 8, false)
	k, rk := f.linear(d, hkv, h, 4, 8, true)
	v, _ := f.linear(d, hkv, h, 4, 8, false)
	o, ro := f.linear(d, h, hq, 2, 3, false)
	v.Disabled = true
	attn := &Attention{Q: q, K: k, V: v, O: o}
	l, err := ApplyLoRAQKV(f.eng, attn)
	require.NoError(t, err)
	require.Equal(t, rq.S, l.Q.Scale)
	require.Equal(t, rk.S, l.K.Scale)
	require.Same(t, k.A, l.K.A)
	require.False(t, l.V.HasAdapter(), "disabled v_proj")
	lo, err := ApplyLoRAO(f.eng, attn)
	require.NoError(t, err)
	require.Equal(t, ro.S, lo.Proj.Scale)
	require.Same(t, o.B, lo.Proj.B)

	narrow, _ := f.linear(d, hkv, h-1, 4, 8, false)
	_, err = ApplyLoRAQKV(f.eng, &Attention{Q: q, K: k, V: narrow})
	require.ErrorIs(t, err, ErrBadInput)
	require.ErrorContains(t, err, "projection v takes bf16[·,15] but q takes bf16[·,16]")
	_, err = ApplyLoRAQKV(f.eng, &Attention{Q: q, K: nil, V: v})
	require.ErrorContains(t, err, "ApplyLoRAQKV: k_proj: layer is nil")
	_, err = ApplyLoRAO(f.eng, &Attention{O: &LoRALinear{Base: o.Base, A: o.A, B: o.B, R: 3, Alpha: 1}})
	require.ErrorContains(t, err, "ApplyLoRAO: o_proj: lora_A bf16[2 16] must be [r=3")
	_, err = ApplyLoRAO(f.eng, nil)
	require.ErrorIs(t, err, ErrBadInput)
}
