package lora

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk/vktest"
)

// linear makes a PEFT-style layer with random W, A and non-zero B, and the
// reference projection with the scale PEFT would use.
func (f *fixture) linear(d dtype.DType, out, in, r int, alpha float64, rslora bool) (*LoRALinear, *ref.Proj) {
	p, rp := f.proj(d, out, in, r, LoRAScale(alpha, r, rslora))
	return &LoRALinear{Base: p.W, A: p.A, B: p.B, Alpha: alpha, R: r, UseRSLoRA: rslora}, rp
}

func TestLoRAScale(t *testing.T) {
	require.Equal(t, 2.0, LoRAScale(16, 8, false))
	require.Equal(t, 16/math.Sqrt(8), LoRAScale(16, 8, true))
	require.Equal(t, 0.5, LoRAScale(1, 2, false))
	require.Equal(t, 4.0, LoRAScale(4, 1, true))
}

func TestGetLoRAParameters(t *testing.T) {
	f := newFixture(t)
	d := dtype.BF16
	for _, rs := range []bool{false, true} {
		l, rp := f.linear(d, 13, 9, 4, 16, rs)
		p, err := GetLoRAParameters(l)
		require.NoError(t, err)
		require.Same(t, l.Base.Dense, p.W.Dense)
		require.Same(t, l.A, p.A)
		require.Same(t, l.B, p.B)
		require.Equal(t, rp.S, p.Scale)
		// The scale reaches the math: Y matches PEFT's forward with alpha/r or alpha/√r.
		x := f.Random(d, 5*9, 1)
		rec := f.Recorder()
		y, err := f.eng.MatmulLoRA(rec, f.Upload(d, x, 5, 9), p, nil)
		require.NoError(t, err)
		f.Keep(y)
		require.NoError(t, rec.Submit())
		vktest.ExpectClose(t, "Y", f.Download(y), ref.LinearForward(x, 5, rp), 13, 2*ref.Tolerance(d).Product)
	}
	l, _ := f.linear(d, 13, 9, 4, 16, false)
	for name, mod := range map[string]func(*LoRALinear){
		"disabled":   func(l *LoRALinear) { l.Disabled = true },
		"merged":     func(l *LoRALinear) { l.Merged = true },
		"no adapter": func(l *LoRALinear) { l.A, l.B, l.R = nil, nil, 0 },
	} {
		c := *l
		mod(&c)
		p, err := GetLoRAParameters(&c)
		require.NoError(t, err, name)
		require.False(t, p.HasAdapter(), name)
		require.Same(t, l.Base.Dense, p.W.Dense, name)
	}
}

func TestGetLoRAParametersErrors(t *testing.T) {
	f := newFixture(t)
	d := dtype.F32
	l, _ := f.linear(d, 6, 5, 3, 8, false)
	other, _ := f.linear(d, 7, 5, 3, 8, false)
	bf, _ := f.linear(dtype.BF16, 6, 5, 3, 8, false)
	cases := []struct {
		name string
		mod  func(*LoRALinear)
		want string
	}{
		{"bias width", func(l *LoRALinear) { l.Bias = f.Upload(d, make([]float64, 5), 5) }, "bias f32[5] must be 1-D f32[6] for base weight f32[6 5]"},
		{"bias 2-D", func(l *LoRALinear) { l.Bias = f.Upload(d, make([]float64, 6), 6, 1) }, "bias f32[6 1] must be 1-D f32[6]"},
		{"bias dtype", func(l *LoRALinear) { l.Bias = f.Upload(dtype.BF16, make([]float64, 6), 6) }, "bias bf16[6] must be 1-D f32[6]"},
		{"nil base", func(l *LoRALinear) { l.Base = Weight{} }, "base weight is nil"},
		{"one of A, B", func(l *LoRALinear) { l.B = nil }, "lora_A f32[3 5] and lora_B <nil tensor> must both be set"},
		{"rank zero", func(l *LoRALinear) { l.R = 0 }, "r = 0 must be ≥ 1"},
		{"rank mismatch", func(l *LoRALinear) { l.R = 4 }, "lora_A f32[3 5] must be [r=4, in=5] for base weight [6,5]"},
		{"B of another layer", func(l *LoRALinear) { l.B = other.B }, "lora_B f32[7 3] must be [out=6, r=3] for base weight [6,5]"},
		{"A transposed", func(l *LoRALinear) { l.A = f.Upload(d, make([]float64, 15), 5, 3) }, "lora_A f32[5 3] must be [r=3, in=5]"},
		{"alpha", func(l *LoRALinear) { l.Alpha = math.Inf(1) }, "lora_alpha = +Inf is not finite"},
		{"dtype", func(l *LoRALinear) { l.A, l.B = bf.A, bf.B }, "must have the weight's dtype f32"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ll := *l
			c.mod(&ll)
			_, err := GetLoRAParameters(&ll)
			require.ErrorContains(t, err, "lora: GetLoRAParameters: ")
			require.ErrorContains(t, err, c.want)
			require.ErrorIs(t, err, ErrBadInput)
			require.NotErrorIs(t, err, ErrNotImplemented)
		})
	}
	_, err := GetLoRAParameters(nil)
	require.ErrorIs(t, err, ErrBadInput)
	// Disabled skips the adapter checks (PEFT ignores the adapter), not the bias.
	ll := *l
	ll.Disabled, ll.R = true, 0
	_, err = GetLoRAParameters(&ll)
	require.NoError(t, err)
	ll.Bias = f.Upload(d, make([]float64, 7), 7)
	_, err = GetLoRAParameters(&ll)
	require.ErrorIs(t, err, ErrBadInput)
	require.ErrorContains(t, err, "bias f32[7] must be 1-D f32[6]")
}

// TestGetLoRAParametersBias: the base bias reaches the Projection, with or
// without an active adapter, and the forward adds it.
func TestGetLoRAParametersBias(t *testing.T) {
	f := newFixture(t)
	for _, d := range dtype.Floats {
		l, rp := f.linear(d, 13, 9, 3, 8, false)
		l.Bias = vktest.RandomBias(t, f.Dev, f.RNG, d, rp)
		x := f.Random(d, 4*9, 1)
		xt := f.Upload(d, x, 4, 9)
		for _, disabled := range []bool{false, true} {
			l.Disabled = disabled
			p, err := GetLoRAParameters(l)
			require.NoError(t, err)
			require.Same(t, l.Bias, p.Bias)
			require.Equal(t, !disabled, p.HasAdapter())
			want := *rp
			if disabled {
				want.R, want.A, want.B = 0, nil, nil
			}
			rec := f.Recorder()
			y, err := f.eng.MatmulLoRA(rec, xt, p, nil)
			require.NoError(t, err)
			f.Keep(y)
			require.NoError(t, rec.Submit())
			vktest.ExpectClose(t, fmt.Sprintf("%s Y (disabled %v)", d, disabled), f.Download(y), ref.LinearForward(x, 4, &want), 13, 2*ref.Tolerance(d).Product)
		}
	}
}
