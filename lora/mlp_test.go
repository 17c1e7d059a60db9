package lora

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

type mlpCase struct {
	m, h, i, r int
	bias       bool
}

func TestMLPForwardBackward(t *testing.T) {
	f := newFixture(t)
	for _, act := range []Activation{SwiGLU, GEGLU, GEGLUTanh} {
		for _, d := range dtype.Floats {
			for ci, c := range []mlpCase{{1, 24, 40, 1, false}, {21, 48, 72, 7, false}, {21, 48, 72, 7, true}} {
				t.Run(fmt.Sprintf("%s/%s/m%d/r%d%s", act, d, c.m, c.r, biasName(c.bias)), func(t *testing.T) {
					f := f.inRNG(t, c.bias)
					pg, rg := f.proj(d, c.i, c.h, c.r, scaleFor(c.r, ci))
					pu, ru := f.proj(d, c.i, c.h, c.r, scaleFor(c.r, ci+1))
					pd, rd := f.proj(d, c.h, c.i, c.r, scaleFor(c.r, ci+2))
					if c.bias {
						// Distinct biases: one added to the wrong projection fails.
						f.bias(d, pg, rg)
						f.bias(d, pu, ru)
						f.bias(d, pd, rd)
					}
					x := f.Random(d, c.m*c.h, 1)
					gy := f.Random(d, c.m*c.h, 1)
					xt := f.Upload(d, x, c.m, c.h)
					before, err := xt.RawBytes()
					require.NoError(t, err)
					var results [2][]*[]float64
					// Pass 0 keeps the saved context, pass 1 runs the
					// default in-place backward.
					for pass, keep := range []bool{true, false} {
						layer := &MLP{Engine: f.eng, Gate: pg, Up: pu, Down: pd, Act: act, KeepSaved: keep}
						rec := f.Recorder()
						y, saved, err := layer.Forward(rec, xt)
						require.NoError(t, err)
						rec.Barrier()
						dx, grads, err := layer.Backward(rec, saved, f.Upload(d, gy, c.m, c.h))
						require.NoError(t, err)
						f.Keep(y, dx)
						f.keepGrads(grads[:]...)
						require.NoError(t, rec.Submit())
						saved.Release()
						wy, _, _ := ref.MLPForward(x, c.m, rg, ru, rd, act)
						wdx, dgate, dup, ddown := ref.MLPBackward(x, gy, c.m, rg, ru, rd, act)
						bound := ref.Tolerance(d).Layer
						gotY, gotDX := f.Download(y), f.Download(dx)
						vktest.ExpectClose(t, "Y", gotY, wy, c.h, bound)
						vktest.ExpectClose(t, "dX", gotDX, wdx, c.h, bound)
						f.checkGrads("gate", grads[0], dgate, rg, bound)
						f.checkGrads("up", grads[1], dup, ru, bound)
						f.checkGrads("down", grads[2], ddown, rd, bound)
						ga, gb := f.Download(grads[0].A), f.Download(grads[2].B)
						results[pass] = []*[]float64{&gotY, &gotDX, &ga, &gb}
						after, err := xt.RawBytes()
						require.NoError(t, err)
						require.Equal(t, before, after, "X must be bit-identical after backward (KeepSaved=%v)", keep)
					}
					for k := range results[0] {
						require.Equal(t, *results[0][k], *results[1][k], "KeepSaved and in place must agree exactly (result %d)", k)
					}
				})
			}
		}
	}
}

// smallMLPForward records the forward of a small f32 SwiGLU MLP (M 3, H 8,
// I 16, r 2) and a barrier, and returns the layer, the recorder, the saved
// context (released at cleanup) and an upstream gradient for the backward.
func (f *fixture) smallMLPForward(keepSaved bool) (*MLP, *vk.Recorder, *MLPSaved, *vk.Tensor) {
	const d = dtype.F32
	pg, _ := f.proj(d, 16, 8, 2, 0.37)
	pu, _ := f.proj(d, 16, 8, 2, 2)
	pd, _ := f.proj(d, 8, 16, 2, 1)
	layer := &MLP{Engine: f.eng, Gate: pg, Up: pu, Down: pd, Act: SwiGLU, KeepSaved: keepSaved}
	rec := f.Recorder()
	y, saved, err := layer.Forward(rec, f.Upload(d, f.Random(d, 24, 1), 3, 8))
	require.NoError(f.T, err)
	f.T.Cleanup(saved.Release)
	f.Keep(y)
	rec.Barrier()
	return layer, rec, saved, f.Upload(d, f.Random(d, 24, 1), 3, 8)
}

// TestMLPContextIsSingleUse: by default the backward runs in place and
// consumes the saved context, so a second Backward on it is refused.
func TestMLPContextIsSingleUse(t *testing.T) {
	f := newFixture(t)
	layer, rec, saved, gy := f.smallMLPForward(false)
	dx, grads, err := layer.Backward(rec, saved, gy)
	require.NoError(t, err)
	f.Keep(dx)
	f.keepGrads(grads[:]...)
	_, _, err = layer.Backward(rec, saved, gy)
	require.ErrorIs(t, err, ErrBadInput)
	require.ErrorContains(t, err, "consumed")
	require.NoError(t, rec.Submit())
}

// TestMLPKeepSavedContextIsReusable: with KeepSaved the saved context is
// left intact, so a second Backward on it succeeds and gives exactly the
// same results as the first.
func TestMLPKeepSavedContextIsReusable(t *testing.T) {
	f := newFixture(t)
	layer, rec, saved, gy := f.smallMLPForward(true)
	var dxs [2]*vk.Tensor
	var grads [2][3]ProjGrad
	for k := range dxs {
		var err error
		dxs[k], grads[k], err = layer.Backward(rec, saved, gy)
		require.NoError(t, err, "backward %d", k)
		f.Keep(dxs[k])
		f.keepGrads(grads[k][:]...)
		rec.Barrier()
	}
	require.NoError(t, rec.Submit())
	require.Equal(t, f.Download(dxs[0]), f.Download(dxs[1]), "dX")
	for j := range grads[0] {
		require.Equal(t, f.Download(grads[0][j].A), f.Download(grads[1][j].A), "grad A %d", j)
		require.Equal(t, f.Download(grads[0][j].B), f.Download(grads[1][j].B), "grad B %d", j)
	}
}

// Backward on a released context is refused before anything is recorded
// (it once failed only at dispatch, which poisoned the recorder), and the
// recorder stays usable.
func TestMLPBackwardReleasedContext(t *testing.T) {
	f := newFixture(t)
	layer, rec, saved, gy := f.smallMLPForward(false)
	require.NoError(t, rec.Submit())
	saved.Release()
	_, _, err := layer.Backward(rec, saved, gy)
	require.ErrorIs(t, err, ErrBadInput)
	require.ErrorContains(t, err, "released")
	require.Zero(t, rec.Dispatches())
	require.NoError(t, rec.Err())
	require.NoError(t, rec.Submit())
}
