package autograd

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk/vktest"
)

// TestChainQKVOMLP runs X → QKV → (Q) → O → Z → MLP → Y on one tape (in
// the second case with biases on q, v, o, gate and down) with
//
//	L = Σ Y·Ry + Σ K·Rk + Σ V·Rv + Σ Z·Rz
//
// so every one of the 7 projections gets a non-trivial gradient, K and V are
// roots that are not used further, and Z is a root that also feeds the MLP
// (its gradient is Rz + the MLP's dX: an accumulation). The reference is the
// float64 layers composed by hand, with the tensors the GPU stores between
// layers (Q, Z, dZ, dQ) rounded to the dtype as the GPU rounds them.
func TestChainQKVOMLP(t *testing.T) {
	const m, h, hq, hkv, inter = 7, 20, 12, 8, 36
	for _, d := range []dtype.DType{dtype.F32, dtype.BF16} {
		for _, c := range []struct {
			r    int
			act  lora.Activation
			bias bool
		}{{3, lora.SwiGLU, false}, {5, lora.GEGLUTanh, true}} {
			t.Run(fmt.Sprintf("%s/r%d/%s", d, c.r, c.act), func(t *testing.T) {
				f := newFixture(t)
				rs := math.Sqrt(float64(c.r))
				pq, rq := f.proj(d, hq, h, c.r, 2.0)
				pk, rk := f.proj(d, hkv, h, c.r, 0.37)
				pv, rv := f.proj(d, hkv, h, c.r, 16/rs) // rsLoRA alpha/√r
				po, ro := f.proj(d, h, hq, c.r, 1.5)
				pg, rg := f.proj(d, inter, h, c.r, 0.5)
				pu, ru := f.proj(d, inter, h, c.r, 8/float64(c.r))
				pd, rd := f.proj(d, h, inter, c.r, 3.0)
				x := f.random(d, m*h, 1)
				gy, gk, gv := f.random(d, m*h, 1), f.random(d, m*hkv, 1), f.random(d, m*hkv, 1)
				// Rz as large as the MLP's dX (≈ 30× Ry here), so a lost term shows.
				gz := f.random(d, m*h, 30)
				if c.bias {
					// Frozen biases on some projections (k and up have none).
					for _, b := range []struct {
						p  *lora.Projection
						rp *ref.Proj
					}{{pq, rq}, {pv, rv}, {po, ro}, {pg, rg}, {pd, rd}} {
						b.p.Bias = vktest.RandomBias(t, f.dev, f.rng, d, b.rp)
					}
				}

				qkv := NewQKV(&lora.QKV{Engine: f.eng, Q: pq, K: pk, V: pv})
				o := NewO(&lora.O{Engine: f.eng, Proj: po})
				mlp := NewMLP(&lora.MLP{Engine: f.eng, Gate: pg, Up: pu, Down: pd, Act: c.act})
				tp, rec := f.tape(), f.recorder()
				xv := NewVar(f.upload(d, x, m, h), true)
				qkvOut, err := tp.Apply(rec, qkv, xv)
				require.NoError(t, err)
				require.Len(t, qkvOut, 3)
				z, err := tp.Apply(rec, o, qkvOut[0])
				require.NoError(t, err)
				y, err := tp.Apply(rec, mlp, z[0])
				require.NoError(t, err)
				rz := f.upload(d, gz, m, h)
				require.NoError(t, tp.Backward(rec,
					Seed{y[0], f.upload(d, gy, m, h)},
					Seed{qkvOut[1], f.upload(d, gk, m, hkv)},
					Seed{qkvOut[2], f.upload(d, gv, m, hkv)},
					Seed{z[0], rz}))
				require.NoError(t, rec.Submit())

				wq, wk, wv := ref.QKVForward(x, m, rq, rk, rv)
				wq = ref.RoundTo(d, wq)
				wz := ref.RoundTo(d, ref.LinearForward(wq, m, ro))
				wy, _, _ := ref.MLPForward(wz, m, rg, ru, rd, c.act)
				dzMLP, dGate, dUp, dDown := ref.MLPBackward(wz, gy, m, rg, ru, rd, c.act)
				dz := add(d, ref.RoundTo(d, dzMLP), gz)
				dq, dO := ref.LinearBackward(wq, dz, m, ro)
				dx, dQ, dK, dV := ref.QKVBackward(x, ref.RoundTo(d, dq), gk, gv, m, rq, rk, rv)

				bound := ref.Tolerance(d).Layer
				vktest.ExpectClose(t, "K", f.download(qkvOut[1].Value), wk, hkv, bound)
				vktest.ExpectClose(t, "V", f.download(qkvOut[2].Value), wv, hkv, bound)
				vktest.ExpectClose(t, "Y", f.download(y[0].Value), wy, h, bound)
				vktest.ExpectClose(t, "dZ", f.download(tp.Grad(z[0])), dz, h, bound)
				vktest.ExpectClose(t, "dQ", f.download(tp.Grad(qkvOut[0])), dq, hq, bound)
				vktest.ExpectClose(t, "dX", f.download(tp.Grad(xv)), dx, h, bound)
				f.checkGrads(tp, "q", qkv.Q, dQ, rq, bound)
				f.checkGrads(tp, "k", qkv.K, dK, rk, bound)
				f.checkGrads(tp, "v", qkv.V, dV, rv, bound)
				f.checkGrads(tp, "o", o.Proj, dO, ro, bound)
				f.checkGrads(tp, "gate", mlp.Gate, dGate, rg, bound)
				f.checkGrads(tp, "up", mlp.Up, dUp, ru, bound)
				f.checkGrads(tp, "down", mlp.Down, dDown, rd, bound)
				// Seeds are copied, never accumulated into: Rz must be intact.
				require.Equal(t, gz, f.download(rz))
			})
		}
	}
}
