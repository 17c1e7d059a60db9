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

type linCase struct{ m, in, out, r int }

// Shapes that are not tile multiples, M = 1, ranks 1, 7 and 16.
var linCases = []linCase{{1, 33, 20, 1}, {37, 70, 45, 7}, {65, 129, 96, 16}, {9, 16, 130, 0}}

func scaleFor(r, i int) float64 {
	switch i % 3 {
	case 0:
		return 0.37
	case 1:
		return 2.0
	}
	return 16 / math.Sqrt(float64(max(r, 1))) // rsLoRA alpha/√r
}

func TestMatmulLoRA(t *testing.T) {
	f := newFixture(t)
	for _, d := range dtype.Floats {
		for i, c := range linCases {
			for _, bias := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%dx%dx%d/r%d%s", d, c.m, c.in, c.out, c.r, biasName(bias)), func(t *testing.T) {
					f := f.inRNG(t, bias)
					p, rp := f.proj(d, c.out, c.in, c.r, scaleFor(c.r, i))
					if bias {
						f.bias(d, p, rp)
					}
					x := f.Random(d, c.m*c.in, 1)
					rec := f.Recorder()
					out := f.Poisoned(d, c.m, c.out)
					y, err := f.eng.MatmulLoRA(rec, f.Upload(d, x, c.m, c.in), p, out)
					require.NoError(t, err)
					require.Same(t, out, y)
					require.NoError(t, rec.Submit())
					vktest.ExpectClose(t, "Y", f.Download(y), ref.LinearForward(x, c.m, rp), c.out, ref.Tolerance(d).Product*2)
				})
			}
		}
	}
}

func TestOForwardBackward(t *testing.T) {
	f := newFixture(t)
	for _, d := range dtype.Floats {
		for i, c := range linCases {
			for _, bias := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%dx%dx%d/r%d%s", d, c.m, c.in, c.out, c.r, biasName(bias)), func(t *testing.T) {
					f := f.inRNG(t, bias)
					p, rp := f.proj(d, c.out, c.in, c.r, scaleFor(c.r, i+1))
					if bias {
						f.bias(d, p, rp)
					}
					// The reference backward ignores the (frozen) bias: it
					// must not reach dX, dA, dB.
					f.checkO(d, p, rp, c.m, true)
				})
			}
		}
	}
}

func TestQKVGroupedQuery(t *testing.T) {
	f := newFixture(t)
	for _, d := range dtype.Floats {
		// q is 96 wide, k and v 32 (grouped-query); v has no adapter in one
		// case. With bias, q and v have one each and k none: every projection
		// adds its own bias or nothing.
		for _, c := range []struct {
			m, in, q, kv, r, rv int
			bias                bool
		}{{1, 40, 48, 16, 1, 1, false}, {19, 72, 96, 32, 7, 0, false}, {1, 40, 48, 16, 1, 1, true}, {19, 72, 96, 32, 7, 0, true}} {
			t.Run(fmt.Sprintf("%s/m%d/r%d%s", d, c.m, c.r, biasName(c.bias)), func(t *testing.T) {
				f := f.inRNG(t, c.bias)
				pq, rq := f.proj(d, c.q, c.in, c.r, 2.0)
				pk, rk := f.proj(d, c.kv, c.in, c.r, 0.37)
				pv, rv := f.proj(d, c.kv, c.in, c.rv, 16/math.Sqrt(float64(c.r)))
				if c.bias {
					f.bias(d, pq, rq)
					f.bias(d, pv, rv)
				}
				x := f.Random(d, c.m*c.in, 1)
				gq, gk, gv := f.Random(d, c.m*c.q, 1), f.Random(d, c.m*c.kv, 1), f.Random(d, c.m*c.kv, 1)
				layer := &QKV{Engine: f.eng, Q: pq, K: pk, V: pv}
				rec := f.Recorder()
				q, k, v, saved, err := layer.Forward(rec, f.Upload(d, x, c.m, c.in))
				require.NoError(t, err)
				defer saved.Release()
				f.Keep(q, k, v)
				rec.Barrier()
				dx, grads, err := layer.Backward(rec, saved, f.Upload(d, gq, c.m, c.q), f.Upload(d, gk, c.m, c.kv), f.Upload(d, gv, c.m, c.kv))
				require.NoError(t, err)
				f.Keep(dx)
				f.keepGrads(grads[:]...)
				require.NoError(t, rec.Submit())
				wq, wk, wv := ref.QKVForward(x, c.m, rq, rk, rv)
				wantDX, dq, dk, dv := ref.QKVBackward(x, gq, gk, gv, c.m, rq, rk, rv)
				bound := ref.Tolerance(d).Layer
				vktest.ExpectClose(t, "Q", f.Download(q), wq, c.q, bound)
				vktest.ExpectClose(t, "K", f.Download(k), wk, c.kv, bound)
				vktest.ExpectClose(t, "V", f.Download(v), wv, c.kv, bound)
				vktest.ExpectClose(t, "dX", f.Download(dx), wantDX, c.in, bound)
				f.checkGrads("q", grads[0], dq, rq, bound)
				f.checkGrads("k", grads[1], dk, rk, bound)
				f.checkGrads("v", grads[2], dv, rv, bound)
			})
		}
	}
}
