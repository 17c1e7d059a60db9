package lora

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// proj makes a random projection with non-zero B on the GPU and its exact
// float64 twin for the reference. r = 0 makes a projection without adapter.
func (f *fixture) proj(d dtype.DType, out, in, r int, s float64) (*Projection, *ref.Proj) {
	w, a, b, rp := vktest.RandomProjection(f.T, f.Dev, f.RNG, d, out, in, r, s)
	return &Projection{W: Weight{Dense: w}, A: a, B: b, Scale: s}, rp
}

// bias gives p and its twin rp a random base bias [out].
func (f *fixture) bias(d dtype.DType, p *Projection, rp *ref.Proj) {
	p.Bias = vktest.RandomBias(f.T, f.Dev, f.RNG, d, rp)
}

// inRNG rebinds the fixture to a subtest; bias cases (added to the tables
// later) draw from their own generator, so the others keep their inputs.
func (f *fixture) inRNG(t *testing.T, bias bool) *fixture {
	if bias {
		return f.inOwn(t)
	}
	return f.in(t)
}

func biasName(bias bool) string {
	if bias {
		return "/bias"
	}
	return ""
}

func (f *fixture) keepGrads(gs ...ProjGrad) {
	for _, g := range gs {
		for _, t := range []*vk.Tensor{g.A, g.B, g.LoRABias, g.Magnitude, g.Bias} {
			if t != nil {
				f.Keep(t)
			}
		}
	}
}

// checkGrads compares dA and dB of one projection with the reference, and
// the extensions' gradients, each present exactly where the reference has
// it.
func (f *fixture) checkGrads(name string, got ProjGrad, want ref.Grads, rp *ref.Proj, bound float64) {
	f.T.Helper()
	for _, v := range []struct {
		what string
		got  *vk.Tensor
		want []float64
	}{{"d lora_B bias", got.LoRABias, want.DLoRABias}, {"dm", got.Magnitude, want.DMagnitude}, {"d bias", got.Bias, want.DBias}} {
		if (v.got == nil) != (v.want == nil) {
			f.T.Fatalf("%s %s: got %v, want present = %v", name, v.what, v.got, v.want != nil)
		}
		if v.got != nil {
			vktest.ExpectClose(f.T, name+" "+v.what, f.Download(v.got), v.want, len(v.want), bound)
		}
	}
	if rp.R == 0 {
		if got.A != nil || got.B != nil {
			f.T.Fatalf("%s: gradients for a projection without adapter", name)
		}
		return
	}
	vktest.ExpectClose(f.T, name+" dA", f.Download(got.A), want.DA, rp.In, bound)
	vktest.ExpectClose(f.T, name+" dB", f.Download(got.B), want.DB, rp.R, bound)
}

// checkO runs O's forward and backward in one recording on random X [m,
// in] and upstream gradient [m, out] (with a barrier between the passes
// when barrier is set) and compares Y, dX and every gradient with the
// reference twin rp.
func (f *fixture) checkO(d dtype.DType, p *Projection, rp *ref.Proj, m int, barrier bool) {
	t := f.T
	t.Helper()
	x := f.Random(d, m*rp.In, 1)
	gy := f.Random(d, m*rp.Out, 1)
	layer := &O{Engine: f.eng, Proj: p}
	rec := f.Recorder()
	y, saved, err := layer.Forward(rec, f.Upload(d, x, m, rp.In))
	require.NoError(t, err)
	defer saved.Release()
	f.Keep(y)
	if barrier {
		rec.Barrier()
	}
	dx, grads, err := layer.Backward(rec, saved, f.Upload(d, gy, m, rp.Out))
	require.NoError(t, err)
	f.Keep(dx)
	f.keepGrads(grads)
	require.NoError(t, rec.Submit())
	wantDX, wantG := ref.LinearBackward(x, gy, m, rp)
	bound := ref.Tolerance(d).Layer
	vktest.ExpectClose(t, "Y", f.Download(y), ref.LinearForward(x, m, rp), rp.Out, bound)
	vktest.ExpectClose(t, "dX", f.Download(dx), wantDX, rp.In, bound)
	f.checkGrads("o", grads, wantG, rp, bound)
}
