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
)

// The fused NF4 matmul decodes each weight to f32(code·absmax) rounded to D
// while loading the B tile, exactly as quant.Dequantize does; the tile then
// holds the same values as with the dense dequantized weight and the same
// accumulation runs. So every NF4 result here must equal its dense twin bit
// for bit, in every dtype, not merely within a tolerance.

// nf4Pair returns a projection with an NF4 base weight and its twin whose
// base weight is the dense dequantized weight; they share the adapter.
func (f *fixture) nf4Pair(d dtype.DType, out, in, r int, s float64, dq bool) (nf4, dense *Projection) {
	p, _ := f.proj(d, out, in, r, s)
	q, dw := quanttest.NF4Weight(f.Fixture, d, out, in, 64, dq)
	dense = &Projection{W: Weight{Dense: f.Upload(d, ref.FromFloat32(quant.Dequantize(q)), out, in)}, A: p.A, B: p.B, Scale: s}
	return &Projection{W: Weight{NF4: dw}, A: p.A, B: p.B, Scale: s}, dense
}

// TestNF4MatmulMatchesDequantized: X·Wᵀ and G·W with W as NF4 equal the
// same products with W dequantized on the GPU. Shapes are not multiples of
// 64; in = 33 and 40 make 64-blocks straddle rows; k = 1000 with a small
// output takes the split-K path.
func TestNF4MatmulMatchesDequantized(t *testing.T) {
	// The narrow kernel takes no NF4 weight: keep both twins on the tiled kernels.
	f := newFixtureWith(t, Options{DisableNarrow: true})
	for _, d := range dtype.Floats {
		for _, c := range []struct{ m, out, in, bs int }{{19, 70, 33, 64}, {1, 45, 40, 32}, {37, 130, 96, 256}, {4, 20, 1000, 64}} {
			for _, dq := range []bool{false, true} {
				name := fmt.Sprintf("%s/m%d/%dx%d/bs%d/dq%v", d, c.m, c.out, c.in, c.bs, dq)
				t.Run(name, func(t *testing.T) {
					f := f.in(t)
					_, w := quanttest.NF4Weight(f.Fixture, d, c.out, c.in, c.bs, dq)
					rec := f.Recorder()
					wd := f.Poisoned(d, c.out, c.in)
					require.NoError(t, quant.DequantizeOnDevice(f.Dev, rec, w, wd))
					rec.Barrier()
					x := f.Upload(d, f.Random(d, c.m*c.in, 1), c.m, c.in)
					g := f.Upload(d, f.Random(d, c.m*c.out, 1), c.m, c.out)
					var res [4]*vk.Tensor
					for i, b := range []Mat{NF4(w), Dense(wd)} {
						res[i] = f.Poisoned(d, c.m, c.out)
						require.NoError(t, f.eng.MatmulTo(rec, res[i], Dense(x), b.T(), 1, 0))
						res[2+i] = f.Poisoned(d, c.m, c.in)
						require.NoError(t, f.eng.MatmulTo(rec, res[2+i], Dense(g), b, 1, 0))
					}
					require.NoError(t, rec.Submit())
					f.RequireSameTensors("X·Wᵀ", res[:1], res[1:2])
					f.RequireSameTensors("G·W", res[2:3], res[3:])
				})
			}
		}
	}
}

// runLayer records a layer's forward, a barrier and its backward on the
// given projections and returns every result tensor (kept until cleanup).
type runLayer func(rec *vk.Recorder, ps []*Projection) []*vk.Tensor

// checkNF4Layer runs the layer with NF4 base weights and with their dense
// dequantized twins and requires identical results.
func (f *fixture) checkNF4Layer(what string, nf4, dense []*Projection, run runLayer) {
	f.T.Helper()
	rec := f.Recorder()
	got := run(rec, nf4)
	want := run(rec, dense)
	require.NoError(f.T, rec.Submit())
	f.RequireSameTensors(what, got, want)
}

func (f *fixture) gradTensors(gs ...ProjGrad) []*vk.Tensor {
	var ts []*vk.Tensor
	for _, g := range gs {
		f.keepGrads(g)
		ts = append(ts, g.A, g.B)
	}
	return ts
}

// TestNF4Layers: O, QKV and MLP with NF4 base weights (mixed nf4 and
// nf4-dq, one projection without adapter, MLP biases) give the results of the same
// layers on the dequantized dense weights, forward and backward.
func TestNF4Layers(t *testing.T) {
	// The narrow kernel takes no NF4 weight: keep both twins on the tiled kernels.
	f := newFixtureWith(t, Options{DisableNarrow: true})
	const m = 19
	for _, d := range dtype.Floats {
		t.Run(d.String()+"/O", func(t *testing.T) {
			f := f.in(t)
			pn, pd := f.nf4Pair(d, 70, 33, 7, 2.0, true)
			x := f.Upload(d, f.Random(d, m*33, 1), m, 33)
			gy := f.Upload(d, f.Random(d, m*70, 1), m, 70)
			f.checkNF4Layer("O", []*Projection{pn}, []*Projection{pd}, func(rec *vk.Recorder, ps []*Projection) []*vk.Tensor {
				l := &O{Engine: f.eng, Proj: ps[0]}
				y, saved, err := l.Forward(rec, x)
				require.NoError(t, err)
				t.Cleanup(saved.Release)
				f.Keep(y)
				rec.Barrier()
				dx, g, err := l.Backward(rec, saved, gy)
				require.NoError(t, err)
				f.Keep(dx)
				return append([]*vk.Tensor{y, dx}, f.gradTensors(g)...)
			})
		})
		t.Run(d.String()+"/QKV", func(t *testing.T) {
			f := f.in(t)
			const in, q, kv = 40, 96, 32
			qn, qd := f.nf4Pair(d, q, in, 4, 2.0, false)
			kn, kd := f.nf4Pair(d, kv, in, 4, 0.37, true)
			vn, vd := f.nf4Pair(d, kv, in, 0, 1, true)
			x := f.Upload(d, f.Random(d, m*in, 1), m, in)
			gq := f.Upload(d, f.Random(d, m*q, 1), m, q)
			gk := f.Upload(d, f.Random(d, m*kv, 1), m, kv)
			gv := f.Upload(d, f.Random(d, m*kv, 1), m, kv)
			f.checkNF4Layer("QKV", []*Projection{qn, kn, vn}, []*Projection{qd, kd, vd}, func(rec *vk.Recorder, ps []*Projection) []*vk.Tensor {
				l := &QKV{Engine: f.eng, Q: ps[0], K: ps[1], V: ps[2]}
				q, k, v, saved, err := l.Forward(rec, x)
				require.NoError(t, err)
				t.Cleanup(saved.Release)
				f.Keep(q, k, v)
				rec.Barrier()
				dx, g, err := l.Backward(rec, saved, gq, gk, gv)
				require.NoError(t, err)
				f.Keep(dx)
				return append([]*vk.Tensor{q, k, v, dx}, f.gradTensors(g[:]...)...)
			})
		})
		t.Run(d.String()+"/MLP", func(t *testing.T) {
			f := f.in(t)
			const h, i = 40, 70
			gn, gd := f.nf4Pair(d, i, h, 5, 2.0, true)
			un, ud := f.nf4Pair(d, i, h, 5, 0.37, false)
			dn, dd := f.nf4Pair(d, h, i, 5, 1.5, true)
			// Biases on gate and down: accepted with NF4 weights of the dtype.
			bg, bd := f.Upload(d, f.Random(d, i, 1), i), f.Upload(d, f.Random(d, h, 1), h)
			gn.Bias, gd.Bias, dn.Bias, dd.Bias = bg, bg, bd, bd
			x := f.Upload(d, f.Random(d, m*h, 1), m, h)
			gy := f.Upload(d, f.Random(d, m*h, 1), m, h)
			f.checkNF4Layer("MLP", []*Projection{gn, un, dn}, []*Projection{gd, ud, dd}, func(rec *vk.Recorder, ps []*Projection) []*vk.Tensor {
				l := &MLP{Engine: f.eng, Gate: ps[0], Up: ps[1], Down: ps[2], Act: SwiGLU}
				y, saved, err := l.Forward(rec, x)
				require.NoError(t, err)
				t.Cleanup(saved.Release)
				f.Keep(y)
				rec.Barrier()
				dx, g, err := l.Backward(rec, saved, gy)
				require.NoError(t, err)
				f.Keep(dx)
				return append([]*vk.Tensor{y, dx}, f.gradTensors(g[:]...)...)
			})
		})
	}
}
