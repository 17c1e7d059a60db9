package autograd

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk/vktest"
)

// TestSharedLayerAndFanOut applies one square O three times:
// Z1 = o(X), Z2 = o(Z1), W = o(X), L = Σ Z2·G2 + Σ W·Gw. X feeds two
// applications (dX is a sum) and the adapter's A and B are read by all three
// (their gradients are sums of three), each sum one elementwise add. In the
// second shape the layer has a (frozen) bias: Z1 carries it into Z2, and no
// gradient may.
func TestSharedLayerAndFanOut(t *testing.T) {
	for _, d := range dtype.Floats {
		for _, c := range []struct {
			m, h, r int
			bias    bool
		}{{5, 11, 3, false}, {19, 6, 5, true}} {
			t.Run(fmt.Sprintf("%s/m%d/h%d", d, c.m, c.h), func(t *testing.T) {
				f := newFixture(t)
				p, rp := f.proj(d, c.h, c.h, c.r, 0.8)
				x, g2, gw := f.random(d, c.m*c.h, 1), f.random(d, c.m*c.h, 1), f.random(d, c.m*c.h, 1)
				if c.bias {
					p.Bias = vktest.RandomBias(t, f.dev, f.rng, d, rp)
				}
				o := NewO(&lora.O{Engine: f.eng, Proj: p})
				tp, rec := f.tape(), f.recorder()
				xv := NewVar(f.upload(d, x, c.m, c.h), true)
				z1, err := tp.Apply(rec, o, xv)
				require.NoError(t, err)
				z2, err := tp.Apply(rec, o, z1[0])
				require.NoError(t, err)
				w, err := tp.Apply(rec, o, xv)
				require.NoError(t, err)
				require.NoError(t, tp.Backward(rec, Seed{z2[0], f.upload(d, g2, c.m, c.h)}, Seed{w[0], f.upload(d, gw, c.m, c.h)}))
				require.NoError(t, rec.Submit())

				wz1 := ref.RoundTo(d, ref.LinearForward(x, c.m, rp))
				// The tape runs the applications in reverse: W's, Z2's, Z1's.
				dx3, pg3 := ref.LinearBackward(x, gw, c.m, rp)
				dz1, pg2 := ref.LinearBackward(wz1, g2, c.m, rp)
				dx1, pg1 := ref.LinearBackward(x, ref.RoundTo(d, dz1), c.m, rp)
				bound := ref.Tolerance(d).Layer
				vktest.ExpectClose(t, "Z2", f.download(z2[0].Value), ref.LinearForward(wz1, c.m, rp), c.h, bound)
				vktest.ExpectClose(t, "dZ1", f.download(tp.Grad(z1[0])), dz1, c.h, bound)
				vktest.ExpectClose(t, "dX", f.download(tp.Grad(xv)), add(d, ref.RoundTo(d, dx3), dx1), c.h, bound)
				f.checkGrads(tp, "o", o.Proj, addGrads(d, pg3, pg2, pg1), rp, bound)
			})
		}
	}
}

// TestUnusedOutputsAndFrozenInput seeds only Q of a QKV: K and V get zero
// gradients (filled by the tape), so their adapters' gradients are zero.
// X requires no gradient: its dX is dropped, the adapters' are kept; a
// frozen adapter (RequiresGrad false) gets none.
func TestUnusedOutputsAndFrozenInput(t *testing.T) {
	const m, h, hq, hkv = 9, 14, 10, 6
	d := dtype.BF16
	f := newFixture(t)
	pq, rq := f.proj(d, hq, h, 2, 1.3)
	pk, rk := f.proj(d, hkv, h, 3, 0.7)
	pv, rv := f.proj(d, hkv, h, 1, 2)
	x, gq := f.random(d, m*h, 1), f.random(d, m*hq, 1)
	qkv := NewQKV(&lora.QKV{Engine: f.eng, Q: pq, K: pk, V: pv})
	qkv.V.A.RequiresGrad = false
	tp, rec := f.tape(), f.recorder()
	xv := NewVar(f.upload(d, x, m, h), false)
	out, err := tp.Apply(rec, qkv, xv)
	require.NoError(t, err)
	require.NoError(t, tp.Backward(rec, Seed{out[0], f.upload(d, gq, m, hq)}))
	require.NoError(t, rec.Submit())

	_, dq, dk, dv := ref.QKVBackward(x, gq, make([]float64, m*hkv), make([]float64, m*hkv), m, rq, rk, rv)
	bound := ref.Tolerance(d).Layer
	require.Nil(t, tp.Grad(xv), "X requires no gradient")
	f.checkGrads(tp, "q", qkv.Q, dq, rq, bound)
	f.checkGrads(tp, "k", qkv.K, dk, rk, 0) // exactly zero
	require.Nil(t, tp.Grad(qkv.V.A), "frozen lora_A of v")
	vktest.ExpectClose(t, "v dB", f.download(tp.Grad(qkv.V.B)), dv.DB, rv.R, 0)
}

// TestNoAdapterProjection: a projection without adapter has no Vars and
// contributes only to dX.
func TestNoAdapterProjection(t *testing.T) {
	const m, in, out = 4, 9, 7
	d := dtype.F32
	f := newFixture(t)
	p, rp := f.proj(d, out, in, 0, 1)
	x, g := f.random(d, m*in, 1), f.random(d, m*out, 1)
	o := NewO(&lora.O{Engine: f.eng, Proj: p})
	require.Equal(t, ProjVars{}, o.Proj)
	tp, rec := f.tape(), f.recorder()
	xv := NewVar(f.upload(d, x, m, in), true)
	y, err := tp.Apply(rec, o, xv)
	require.NoError(t, err)
	require.NoError(t, tp.Backward(rec, Seed{y[0], f.upload(d, g, m, out)}))
	require.NoError(t, rec.Submit())
	dx, _ := ref.LinearBackward(x, g, m, rp)
	vktest.ExpectClose(t, "dX", f.download(tp.Grad(xv)), dx, in, ref.Tolerance(d).Layer)
}

func TestTapeErrors(t *testing.T) {
	d := dtype.F32
	f := newFixture(t)
	p, _ := f.proj(d, 6, 5, 2, 1)
	o := NewO(&lora.O{Engine: f.eng, Proj: p})
	tp, rec := f.tape(), f.recorder()
	x := NewVar(f.upload(d, f.random(d, 15, 1), 3, 5), true)

	_, err := tp.Apply(rec, o, nil)
	require.ErrorIs(t, err, ErrBadInput)
	_, err = tp.Apply(rec, o, x, x)
	require.ErrorIs(t, err, ErrBadInput)
	require.ErrorContains(t, err, "2 tensors, want 1")
	_, err = tp.Apply(rec, o, NewVar(f.upload(d, f.random(d, 12, 1), 3, 4), true))
	require.ErrorIs(t, err, ErrBadInput, "wrong input width, reported by lora")

	y, err := tp.Apply(rec, o, x)
	require.NoError(t, err)
	err = tp.Backward(rec, Seed{y[0], f.upload(d, f.random(d, 15, 1), 3, 5)})
	require.ErrorIs(t, err, ErrBadInput)
	require.ErrorContains(t, err, "must match its Var")
	_, err = tp.Apply(rec, o, x)
	require.NoError(t, err, "a rejected seed leaves the tape usable")
	gy := f.upload(d, f.random(d, 18, 1), 3, 6)
	require.NoError(t, tp.Backward(rec, Seed{y[0], gy}))
	err = tp.Backward(rec, Seed{y[0], gy})
	require.ErrorContains(t, err, "already ran")
	_, err = tp.Apply(rec, o, x)
	require.ErrorContains(t, err, "already ran")
	require.NoError(t, rec.Submit())
	tp.Release()
	tp.Release() // idempotent
	require.Nil(t, tp.Grad(x))
}

// TestAccumulationIsOneAdd applies one O to X four times, each output seeded
// on its own. The tape's dX, dA and dB must be, bit for bit, the fp32 sums
// (rounded to the dtype after each add, in the tape's reverse order) of the
// four contributions the layer gives when run alone, and within the layer
// tolerance of the float64 sum.
func TestAccumulationIsOneAdd(t *testing.T) {
	const m, in, out, r, uses = 7, 10, 9, 3, 4
	for _, d := range dtype.Floats {
		t.Run(d.String(), func(t *testing.T) {
			f := newFixture(t)
			p, rp := f.proj(d, out, in, r, 1.7)
			x := f.random(d, m*in, 1)
			xt := f.upload(d, x, m, in)
			o := NewO(&lora.O{Engine: f.eng, Proj: p})
			tp, rec := f.tape(), f.recorder()
			xv := NewVar(xt, true)
			gs := make([][]float64, uses)
			seeds := make([]Seed, uses)
			for i := range gs {
				gs[i] = f.random(d, m*out, 1)
				y, err := tp.Apply(rec, o, xv)
				require.NoError(t, err)
				seeds[i] = Seed{y[0], f.upload(d, gs[i], m, out)}
			}
			require.NoError(t, tp.Backward(rec, seeds...))
			require.NoError(t, rec.Submit())

			// Each contribution alone, from the layer itself; the tape runs
			// the applications last to first, so that is the order of the sums.
			var want [3][]float64 // dX, dA, dB
			var exact [3][]float64
			for i := uses - 1; i >= 0; i-- {
				y, saved, err := o.Layer.Forward(rec, xt)
				require.NoError(t, err)
				rec.Barrier()
				dx, pg, err := o.Layer.Backward(rec, saved, seeds[i].Grad)
				require.NoError(t, err)
				require.NoError(t, rec.Submit())
				got := [3][]float64{f.download(dx), f.download(pg.A), f.download(pg.B)}
				y.Release()
				saved.Release()
				dx.Release()
				pg.Release()
				rdx, rg := ref.LinearBackward(x, gs[i], m, rp)
				for k, ex := range [3][]float64{rdx, rg.DA, rg.DB} {
					if want[k] == nil {
						want[k], exact[k] = got[k], ex
						continue
					}
					want[k] = sum32(d, want[k], got[k])
					for j := range ex {
						exact[k][j] += ex[j]
					}
				}
			}
			g := o.Proj.Grad(tp)
			for k, res := range []struct {
				name string
				got  []float64
				cols int
			}{{"dX", f.download(tp.Grad(xv)), in}, {"dA", f.download(g.A), in}, {"dB", f.download(g.B), r}} {
				vktest.ExpectClose(t, res.name+" (bits)", res.got, want[k], res.cols, 0)
				vktest.ExpectClose(t, res.name+" vs float64", res.got, exact[k], res.cols, ref.Tolerance(d).Layer)
			}
		})
	}
}

// sum32 is add.comp with alpha 1: a + b in float32, rounded to d.
func sum32(d dtype.DType, a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = float64(dtype.Round(d, float32(a[i])+float32(b[i])))
	}
	return out
}
