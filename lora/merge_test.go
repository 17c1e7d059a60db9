package lora

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/quant/quanttest"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// linearOf is the LoRALinear of projection p, whose scale is alpha/r (or
// alpha/√r with rslora).
func linearOf(p *Projection, r int, alpha float64, rslora bool) *LoRALinear {
	return &LoRALinear{Base: p.W, Bias: p.Bias, A: p.A, B: p.B, LoRABias: p.LoRABias, Magnitude: p.Magnitude,
		Alpha: alpha, R: r, UseRSLoRA: rslora}
}

// forward records the layer's projection of x and returns Y, kept.
func (f *fixture) forward(rec *vk.Recorder, x *vk.Tensor, l *LoRALinear) *vk.Tensor {
	f.T.Helper()
	p, err := GetLoRAParameters(l)
	require.NoError(f.T, err)
	require.Equal(f.T, l.Merged, !p.HasAdapter(), "a merged layer runs without its adapter")
	y, err := f.eng.MatmulLoRA(rec, x, p, nil)
	require.NoError(f.T, err)
	f.Keep(y)
	return y
}

type mergeCase struct {
	out, in, r  int
	alpha       float64
	rslora      bool
	bias, dora  bool
	loraBias    bool
	description string
}

var mergeCases = []mergeCase{
	{out: 45, in: 70, r: 7, alpha: 11, description: "plain"},
	{out: 33, in: 129, r: 3, alpha: 5, rslora: true, bias: true, description: "bias, rsLoRA"},
	{out: 37, in: 65, r: 5, alpha: 3, bias: true, loraBias: true, description: "lora_B bias"},
	{out: 45, in: 70, r: 7, alpha: 11, dora: true, description: "DoRA"},
	{out: 1, in: 96, r: 1, alpha: 0.6, bias: true, dora: true, description: "DoRA, one row, bias"},
}

// Merge, the merged forward, MergedWeight and Unmerge of a dense layer
// against float64, in every dtype, odd shapes, ranks 1, 3, 5 and 7, s ≠ 1:
//   - the merged weight and bias within one rounding (Product) of
//     W + s·B·A (DoRA: c ⊙ (W + s·B·A)) and b + s·b_B;
//   - MergedWeight's copy bit for bit the weight Merge leaves in place;
//   - the merged layer's forward (the plain base matmul) against the
//     reference forward of the adapted layer and against the unmerged
//     layer's forward on the GPU (Layer);
//   - Unmerge restores W and b within Layer: W' − s·B·A is rounded again,
//     and s·B·A is here larger than W (B is drawn at 0.5), so the error
//     relative to W is several roundings; the f32 bound is 1e-4.
func TestMerge(t *testing.T) {
	f := newFixture(t)
	for _, d := range dtype.Floats {
		for _, c := range mergeCases {
			t.Run(fmt.Sprintf("%s/%s/%dx%dx%d", d, c.description, c.out, c.in, c.r), func(t *testing.T) {
				f := f.inOwn(t)
				tol := ref.Tolerance(d)
				p, rp := f.proj(d, c.out, c.in, c.r, LoRAScale(c.alpha, c.r, c.rslora))
				if c.bias {
					f.bias(d, p, rp)
				}
				f.extend(d, p, rp, 1, features{loraBias: c.loraBias, dora: c.dora})
				l := linearOf(p, c.r, c.alpha, c.rslora)
				const m = 13
				xs := f.Random(d, m*c.in, 1)
				x := f.Upload(d, xs, m, c.in)
				wantY := ref.LinearForward(xs, m, rp)
				wantW, wantB := ref.Merged(rp)

				rec := f.Recorder()
				y0 := f.forward(rec, x, l)
				w2, b2, err := f.eng.MergedWeight(rec, l)
				require.NoError(t, err)
				f.Keep(w2, b2)
				require.False(t, l.Merged, "MergedWeight leaves the layer alone")
				require.NoError(t, rec.Submit())
				vktest.ExpectClose(t, "unmerged Y", f.Download(y0), wantY, c.out, tol.Layer)

				require.NoError(t, f.eng.Merge(rec, l))
				require.True(t, l.Merged)
				require.Equal(t, c.dora, l.DoRAFactor != nil, "DoRA keeps its factor")
				require.NoError(t, rec.Submit())
				gotW := f.Download(p.W.Dense)
				vktest.ExpectClose(t, "merged W", gotW, wantW, c.in, tol.Product)
				f.RequireSameTensors("MergedWeight vs Merge", []*vk.Tensor{w2, b2}, []*vk.Tensor{p.W.Dense, p.Bias})
				if c.bias {
					vktest.ExpectClose(t, "merged bias", f.Download(p.Bias), wantB, c.out, tol.Product)
				} else {
					require.Nil(t, b2)
				}
				err = f.eng.Merge(rec, l)
				require.ErrorIs(t, err, ErrBadInput, "a second merge")
				require.ErrorContains(t, err, "already merged")

				rec.Barrier()
				y1 := f.forward(rec, x, l)
				require.NoError(t, rec.Submit())
				vktest.ExpectClose(t, "merged Y", f.Download(y1), wantY, c.out, tol.Layer)
				vktest.ExpectClose(t, "merged Y vs unmerged Y", f.Download(y1), f.Download(y0), c.out, tol.Layer)

				require.NoError(t, f.eng.Unmerge(rec, l))
				require.False(t, l.Merged)
				require.Nil(t, l.DoRAFactor, "Unmerge releases the factor")
				rec.Barrier()
				y2 := f.forward(rec, x, l)
				require.NoError(t, rec.Submit())
				vktest.ExpectClose(t, "unmerged W", f.Download(p.W.Dense), rp.W, c.in, tol.Layer)
				if c.bias {
					vktest.ExpectClose(t, "unmerged bias", f.Download(p.Bias), rp.Bias, c.out, tol.Layer)
				}
				vktest.ExpectClose(t, "Y after unmerge", f.Download(y2), wantY, c.out, tol.Layer)
			})
		}
	}
}

// MergedWeight of an NF4 base: dequantized on the device (the values the
// NF4 matmul decodes), then merged, against float64 from the CPU decoder's
// values; the dense merged layer's forward against the NF4 layer's.
func TestMergedWeightNF4(t *testing.T) {
	f := newFixture(t)
	for _, d := range dtype.Floats {
		for _, c := range []struct {
			out, in, r, bs int
			dq, dora, bias bool
		}{{70, 33, 7, 64, false, false, true}, {45, 40, 3, 32, true, true, false}, {20, 96, 5, 64, true, false, false}} {
			t.Run(fmt.Sprintf("%s/%dx%dx%d/dq=%v/dora=%v", d, c.out, c.in, c.r, c.dq, c.dora), func(t *testing.T) {
				f := f.inOwn(t)
				tol := ref.Tolerance(d)
				dense, rp := f.proj(d, c.out, c.in, c.r, LoRAScale(9, c.r, false))
				q, w := quanttest.NF4Weight(f.Fixture, d, c.out, c.in, c.bs, c.dq)
				rp.W = ref.RoundTo(d, ref.FromFloat32(quant.Dequantize(q)))
				p := &Projection{W: Weight{NF4: w}, A: dense.A, B: dense.B, Scale: rp.S}
				if c.bias {
					f.bias(d, p, rp)
				}
				f.extend(d, p, rp, 1, features{dora: c.dora})
				l := linearOf(p, c.r, 9, false)
				const m = 11
				xs := f.Random(d, m*c.in, 1)
				x := f.Upload(d, xs, m, c.in)

				rec := f.Recorder()
				y0 := f.forward(rec, x, l)
				mw, mb, err := f.eng.MergedWeight(rec, l)
				require.NoError(t, err)
				f.Keep(mw, mb)
				require.NoError(t, rec.Submit())
				wantW, wantB := ref.Merged(rp)
				vktest.ExpectClose(t, "merged W", f.Download(mw), wantW, c.in, tol.Product)
				if c.bias {
					vktest.ExpectClose(t, "bias", f.Download(mb), wantB, c.out, 0)
				}
				merged := &LoRALinear{Base: Weight{Dense: mw}, Bias: mb, Merged: true}
				rec.Barrier()
				y1 := f.forward(rec, x, merged)
				require.NoError(t, rec.Submit())
				wantY := ref.LinearForward(xs, m, rp)
				vktest.ExpectClose(t, "NF4 Y", f.Download(y0), wantY, c.out, tol.Layer)
				vktest.ExpectClose(t, "merged Y", f.Download(y1), wantY, c.out, tol.Layer)
				vktest.ExpectClose(t, "merged Y vs NF4 Y", f.Download(y1), f.Download(y0), c.out, tol.Layer)

				err = f.eng.Merge(rec, l)
				require.ErrorIs(t, err, ErrBadInput)
				require.ErrorContains(t, err, "use MergedWeight")
			})
		}
	}
}

// MergedWeight of a layer without adapter, and of a merged one, copies its
// base bit for bit.
func TestMergedWeightCopies(t *testing.T) {
	f := newFixture(t)
	const d = dtype.BF16
	p, rp := f.proj(d, 19, 23, 3, 2)
	f.bias(d, p, rp)
	rec := f.Recorder()
	for _, l := range []*LoRALinear{{Base: p.W, Bias: p.Bias}, {Base: p.W, Bias: p.Bias, A: p.A, B: p.B, R: 3, Alpha: 6, Merged: true}} {
		w, b, err := f.eng.MergedWeight(rec, l)
		require.NoError(t, err)
		f.Keep(w, b)
		require.NoError(t, rec.Submit())
		f.RequireSameTensors("copy", []*vk.Tensor{w, b}, []*vk.Tensor{p.W.Dense, p.Bias})
	}
}

// What the merge functions refuse, each with ErrBadInput naming the
// problem, before anything is recorded.
func TestMergeErrors(t *testing.T) {
	f := newFixture(t)
	const d, out, in, r = dtype.F16, 12, 20, 3
	p, _ := f.proj(d, out, in, r, 1)
	_, nf4 := quanttest.NF4Weight(f.Fixture, d, out, in, 64, false)
	mag := f.Upload(d, f.Random(d, out, 1), out)
	good := func() *LoRALinear { return &LoRALinear{Base: p.W, A: p.A, B: p.B, R: r, Alpha: 3} }
	aView, err := p.A.View(out)
	require.NoError(t, err)
	type call func(e *Engine, rec *vk.Recorder, l *LoRALinear) error
	merge := func(e *Engine, rec *vk.Recorder, l *LoRALinear) error { return e.Merge(rec, l) }
	unmerge := func(e *Engine, rec *vk.Recorder, l *LoRALinear) error { return e.Unmerge(rec, l) }
	copied := func(e *Engine, rec *vk.Recorder, l *LoRALinear) error {
		w, b, err := e.MergedWeight(rec, l)
		w.Release()
		b.Release()
		return err
	}
	for _, c := range []struct {
		name string
		fn   call
		edit func(l *LoRALinear)
		eng  *Engine
		want string
	}{
		{"nil layer", merge, nil, f.eng, "layer is nil"},
		{"nil engine", merge, func(*LoRALinear) {}, nil, "engine or recorder is nil"},
		{"NF4 merge", merge, func(l *LoRALinear) { l.Base = Weight{NF4: nf4} }, f.eng, "use MergedWeight"},
		{"NF4 unmerge", unmerge, func(l *LoRALinear) { l.Base, l.Merged = Weight{NF4: nf4}, true }, f.eng, "NF4"},
		{"already merged", merge, func(l *LoRALinear) { l.Merged = true }, f.eng, "already merged"},
		{"not merged", unmerge, func(*LoRALinear) {}, f.eng, "not merged"},
		{"disabled", merge, func(l *LoRALinear) { l.Disabled = true }, f.eng, "disabled"},
		{"disabled copy", copied, func(l *LoRALinear) { l.Disabled = true }, f.eng, "disabled"},
		{"no adapter", merge, func(l *LoRALinear) { l.A, l.B = nil, nil }, f.eng, "no adapter"},
		{"lora_B bias without bias", merge, func(l *LoRALinear) { l.LoRABias = mag }, f.eng, "without a base bias"},
		{"lora_B bias without bias, copy", copied, func(l *LoRALinear) { l.LoRABias = mag }, f.eng, "without a base bias"},
		{"DoRA unmerge without factor", unmerge, func(l *LoRALinear) { l.Magnitude, l.Merged = mag, true }, f.eng, "without its DoRAFactor"},
		{"factor without DoRA", unmerge, func(l *LoRALinear) {
			l.Merged, l.DoRAFactor = true, f.Upload(dtype.F32, f.Random(dtype.F32, out, 1), out)
		}, f.eng, "without DoRA magnitude"},
		{"factor of f16", unmerge, func(l *LoRALinear) { l.Magnitude, l.Merged, l.DoRAFactor = mag, true, mag }, f.eng, "must be f32[12]"},
		{"stale factor", merge, func(l *LoRALinear) { l.DoRAFactor = f.Upload(dtype.F32, f.Random(dtype.F32, out, 1), out) }, f.eng, "not merged"},
		{"lora_A shape", merge, func(l *LoRALinear) { l.A = f.Upload(d, f.Random(d, r*(in+1), 1), r, in+1) }, f.eng, "lora_A"},
		{"bias aliases lora_A", merge, func(l *LoRALinear) { l.Bias = aView }, f.eng, "shares memory with lora_A"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := f.in(t)
			rec := f.Recorder()
			var l *LoRALinear
			if c.edit != nil {
				l = good()
				c.edit(l)
			}
			err := c.fn(c.eng, rec, l)
			require.ErrorIs(t, err, ErrBadInput)
			require.ErrorContains(t, err, c.want)
			require.Zero(t, rec.Dispatches(), "nothing recorded")
			require.NoError(t, rec.Err())
		})
	}
	// The engine and the layer still merge afterwards.
	rec := f.Recorder()
	l := good()
	require.NoError(t, f.eng.Merge(rec, l))
	require.NoError(t, f.eng.Unmerge(rec, l))
	require.NoError(t, rec.Submit())
}
