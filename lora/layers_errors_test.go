package lora

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// Bad input to the layers is an error naming the argument and shapes, and
// the engine keeps working afterwards.
func TestLayerBadInput(t *testing.T) {
	f := newFixture(t)
	d := dtype.F32
	good, _ := f.proj(d, 12, 8, 3, 0.37)
	x := f.Upload(d, f.Random(d, 5*8, 1), 5, 8)
	released := f.Upload(d, f.Random(d, 12, 1), 12)
	released.Release()
	rec := f.Recorder()
	withA := func(p Projection, mod func(*Projection)) *Projection { mod(&p); return &p }
	cases := []struct {
		name string
		p    *Projection
		x    func() error
		want string
	}{
		{"X width", good, nil, "must be [M,8]"},
		{"A width", withA(*good, func(p *Projection) { p.A = f.Upload(d, f.Random(d, 3*9, 1), 3, 9) }), nil, "lora_A f32[3 9] must be [r,8]"},
		{"rank mismatch", withA(*good, func(p *Projection) { p.B = f.Upload(d, f.Random(d, 12*4, 1), 12, 4) }), nil, "lora_B f32[12 4] must be [12,3]"},
		{"nil A", withA(*good, func(p *Projection) { p.A = nil }), nil, "must both be set or both nil"},
		{"NaN scale", withA(*good, func(p *Projection) { p.Scale = math.NaN() }), nil, "not finite"},
		{"Inf scale", withA(*good, func(p *Projection) { p.Scale = math.Inf(1) }), nil, "not finite"},
		{"dtype mix", withA(*good, func(p *Projection) { p.A = f.Upload(dtype.BF16, f.Random(dtype.BF16, 24, 1), 3, 8) }), nil, "must have the weight's dtype f32"},
		{"nil weight", withA(*good, func(p *Projection) { p.W = Weight{} }), nil, "weight is nil"},
		{"bias width", withA(*good, func(p *Projection) { p.Bias = f.Upload(d, f.Random(d, 8, 1), 8) }), nil,
			"projection o: bias f32[8] must be 1-D f32[12] for weight f32[12 8]"},
		{"bias 2-D", withA(*good, func(p *Projection) { p.Bias = f.Upload(d, f.Random(d, 12, 1), 1, 12) }), nil, "bias f32[1 12] must be 1-D f32[12]"},
		{"bias dtype", withA(*good, func(p *Projection) { p.Bias = f.Upload(dtype.BF16, f.Random(dtype.BF16, 12, 1), 12) }), nil,
			"bias bf16[12] must be 1-D f32[12]"},
		{"released bias", withA(*good, func(p *Projection) { p.Bias = released }), nil, "bias of weight f32[12 8] is nil or released"},
	}
	for _, tc := range cases {
		in := x
		if tc.name == "X width" {
			in = f.Upload(d, f.Random(d, 5*7, 1), 5, 7)
		}
		_, _, err := (&O{Engine: f.eng, Proj: tc.p}).Forward(rec, in)
		require.ErrorIs(t, err, ErrBadInput, tc.name)
		require.ErrorContains(t, err, tc.want, tc.name)
	}
	// QKV with a k projection of another input width, or a bias of q's width on k.
	k, _ := f.proj(d, 4, 9, 2, 1)
	_, _, _, _, err := (&QKV{Engine: f.eng, Q: good, K: k, V: good}).Forward(rec, x)
	require.ErrorContains(t, err, "projection k takes f32[·,9] but q takes f32[·,8]")
	k, _ = f.proj(d, 4, 8, 2, 1)
	k.Bias = f.Upload(d, f.Random(d, 12, 1), 12)
	_, _, _, _, err = (&QKV{Engine: f.eng, Q: good, K: k, V: good}).Forward(rec, x)
	require.ErrorIs(t, err, ErrBadInput)
	require.ErrorContains(t, err, "lora: QKV.Forward: projection k: bias f32[12] must be 1-D f32[4] for weight f32[4 8]")
	// MatmulLoRA validates the bias too.
	wide := withA(*good, func(p *Projection) { p.Bias = f.Upload(d, f.Random(d, 13, 1), 13) })
	_, err = f.eng.MatmulLoRA(rec, x, wide, nil)
	require.ErrorIs(t, err, ErrBadInput)
	require.ErrorContains(t, err, "lora: MatmulLoRA: projection w: bias f32[13] must be 1-D f32[12]")
	// MLP with a down projection of the wrong shape, and an unset activation.
	up, _ := f.proj(d, 12, 8, 3, 2)
	_, _, err = (&MLP{Engine: f.eng, Gate: good, Up: up, Down: up, Act: SwiGLU}).Forward(rec, x)
	require.ErrorContains(t, err, "must be [I,H], [I,H], [H,I]")
	_, _, err = (&MLP{Engine: f.eng, Gate: good, Up: up, Down: good}).Forward(rec, x)
	require.ErrorContains(t, err, "activation")
	down, _ := f.proj(d, 8, 12, 3, 1)
	down.Bias = f.Upload(d, f.Random(d, 12, 1), 12) // [I] instead of [H]
	_, _, err = (&MLP{Engine: f.eng, Gate: good, Up: up, Down: down, Act: SwiGLU}).Forward(rec, x)
	require.ErrorIs(t, err, ErrBadInput)
	require.ErrorContains(t, err, "lora: MLP.Forward: projection down: bias f32[12] must be 1-D f32[8] for weight f32[8 12]")
	require.Zero(t, rec.Dispatches(), "rejected calls record nothing")
	// Nothing bad was recorded: the engine still runs a valid layer, with a bias.
	ok, rok := f.proj(d, 12, 8, 3, 0.37)
	f.bias(d, ok, rok)
	y, saved, err := (&O{Engine: f.eng, Proj: ok}).Forward(rec, x)
	require.NoError(t, err)
	defer saved.Release()
	f.Keep(y)
	require.NoError(t, rec.Submit())
	xs := f.Download(x)
	vktest.ExpectClose(t, "Y after errors", f.Download(y), ref.LinearForward(xs, 5, rok), 12, ref.Tolerance(d).Layer)
}

// An MLP forward that fails after recording work (here its [M, I]
// pre-activation exceeds the device's storage-buffer range, after x·Aᵀ was
// recorded into temporaries it then frees) returns the error, the recording
// is refused at Submit instead of running on freed memory, and the engine
// and recorder work afterwards.
func TestLayerFailureMidRecording(t *testing.T) {
	f := newFixture(t)
	const d = dtype.BF16
	const h, r = 8, 2
	limit := f.Dev.Caps().MaxStorageBufferRange
	if limit > 1<<28 {
		t.Skipf("storage-buffer range %d too large to exceed cheaply", limit)
	}
	m := 1 << 14
	i := int(limit/uint64(2*m)) + 8 // [m, i] bf16 is just past the range
	ps := [3]*Projection{}
	for k, sh := range [3][2]int{{i, h}, {i, h}, {h, i}} {
		ps[k], _ = f.proj(d, sh[0], sh[1], r, 0.5)
	}
	x := f.Upload(d, f.Random(d, m*h, 1), m, h)
	rec := f.Recorder()
	l := &MLP{Engine: f.eng, Gate: ps[0], Up: ps[1], Down: ps[2], Act: SwiGLU}
	_, _, err := l.Forward(rec, x)
	require.ErrorIs(t, err, vk.ErrTooLarge)
	require.NotZero(t, rec.Dispatches(), "x·Aᵀ was recorded before the failure")
	require.ErrorIs(t, rec.Submit(), vk.ErrReleased, "the recording referencing freed temporaries must not run")

	// Still usable: a small layer on the same engine and recorder.
	small, rp := f.proj(d, 6, h, r, 0.5)
	xs := f.Random(d, 3*h, 1)
	y, saved, err := (&O{Engine: f.eng, Proj: small}).Forward(rec, f.Upload(d, xs, 3, h))
	require.NoError(t, err)
	defer y.Release()
	defer saved.Release()
	require.NoError(t, rec.Submit())
	vktest.ExpectClose(t, "Y", f.Download(y), ref.RoundTo(d, ref.LinearForward(xs, 3, rp)), 6, ref.Tolerance(d).Product)
}

// MatmulLoRA into an output that is X (or another of its inputs) is
// refused before anything is recorded; it once returned a silently wrong
// Y. The engine stays usable.
func TestMatmulLoRAAliasRefused(t *testing.T) {
	f := newFixture(t)
	const d, m, n, r = dtype.F16, 9, 24, 3
	p, _ := f.proj(d, n, n, r, 0.5) // square, so that X [m, n] could stand as out
	x := f.Upload(d, f.Random(d, m*n, 1), m, n)
	rec := f.Recorder()
	_, err := f.eng.MatmulLoRA(rec, x, p, x)
	require.ErrorIs(t, err, ErrBadInput)
	require.ErrorContains(t, err, "shares memory with X")
	wRows, err := p.W.Dense.View(m, n) // the first rows of W
	require.NoError(t, err)
	_, err = f.eng.MatmulLoRA(rec, x, p, wRows)
	require.ErrorContains(t, err, "shares memory with W")
	require.Zero(t, rec.Dispatches())
	y, err := f.eng.MatmulLoRA(rec, x, p, nil)
	require.NoError(t, err)
	f.Keep(y)
	require.NoError(t, rec.Submit())
}

// One Release frees every tensor of a layer that was handed its tensors;
// twice is harmless, and the released layer refuses to run.
func TestLayerRelease(t *testing.T) {
	f := newFixture(t)
	const d = dtype.F16
	before := f.Dev.Live()["buffer"]
	gate, _ := f.proj(d, 16, 8, 2, 0.5)
	up, _ := f.proj(d, 16, 8, 2, 2)
	down, _ := f.proj(d, 8, 16, 2, 1)
	l := &MLP{Engine: f.eng, Gate: gate, Up: up, Down: down, Act: SwiGLU}
	require.Greater(t, f.Dev.Live()["buffer"], before)
	l.Release()
	l.Release()
	require.Equal(t, before, f.Dev.Live()["buffer"], "every weight, adapter and bias freed")
	x := f.Upload(d, f.Random(d, 3*8, 1), 3, 8)
	_, _, err := l.Forward(f.Recorder(), x)
	require.ErrorIs(t, err, ErrBadInput)
}
