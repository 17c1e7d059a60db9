package lora

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/kernels"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// features is a combination of PEFT's extensions for one projection.
type features struct {
	loraBias, dora, trainBias bool
	dropout                   float64
	explicitMask              bool // an uploaded U8 mask instead of the generator
}

func (ft features) String() string {
	s := ""
	if ft.loraBias {
		s += "+lora_bias"
	}
	if ft.dora {
		s += "+dora"
	}
	if ft.trainBias {
		s += "+bias"
	}
	if ft.dropout > 0 {
		s += fmt.Sprintf("+dropout%g", ft.dropout)
		if ft.explicitMask {
			s += "(mask)"
		}
	}
	return s[1:]
}

// extend gives p and its twin rp the features for inputs of m rows: random
// lora_B bias and base bias, a magnitude 0.5–1.5 times the true row norm
// (so c ≠ 1), and the dropout mask the reference sees.
func (f *fixture) extend(d dtype.DType, p *Projection, rp *ref.Proj, m int, ft features) {
	if ft.loraBias {
		rp.LoRABias = f.Random(d, rp.Out, 1)
		p.LoRABias = f.Upload(d, rp.LoRABias, rp.Out)
	}
	if ft.trainBias {
		if p.Bias == nil {
			f.bias(d, p, rp)
		}
		p.BiasTrainable, rp.BiasTrainable = true, true
	}
	if ft.dora {
		mag := ref.DoRANorms(rp)
		for o := range mag {
			mag[o] *= 0.5 + f.RNG.Float64()
		}
		rp.Magnitude = ref.RoundTo(d, mag)
		p.Magnitude = f.Upload(d, rp.Magnitude, rp.Out)
	}
	if ft.dropout > 0 {
		rp.P = ft.dropout
		rp.Mask = make([]float64, m*rp.In)
		p.Dropout = &Dropout{P: ft.dropout, Seed: f.RNG.Uint64(), Offset: f.RNG.Uint64() >> 1}
		src := kernels.DropoutSource{P: ft.dropout, Seed: p.Dropout.Seed, Offset: p.Dropout.Offset}
		for i := range rp.Mask {
			if ft.explicitMask {
				rp.Mask[i] = float64(f.RNG.IntN(2))
			} else if src.Keep(uint64(i)) {
				rp.Mask[i] = 1
			}
		}
		if ft.explicitMask {
			p.Dropout.Mask = f.uploadMask(rp.Mask, m, rp.In)
		}
	}
}

var extFeatures = []features{
	{loraBias: true},
	{dora: true},
	{dropout: 0.3},
	{dropout: 0.25, explicitMask: true},
	{dora: true, dropout: 0.2},
	{loraBias: true, trainBias: true, dropout: 0.1},
	{trainBias: true},
}

// The extension path of O against the float64 reference: every feature
// combination, every dtype, odd shapes, rank 7, s ≠ 1; dX, dA, dB and each
// extension's gradient compared separately.
func TestOExtensions(t *testing.T) {
	f := newFixture(t)
	for _, d := range dtype.Floats {
		for _, ft := range extFeatures {
			for _, c := range []linCase{{37, 70, 45, 7}, {65, 129, 96, 16}} {
				t.Run(fmt.Sprintf("%s/%s/%dx%dx%d", d, ft, c.m, c.in, c.out), func(t *testing.T) {
					f := f.inOwn(t)
					p, rp := f.proj(d, c.out, c.in, c.r, 1.7)
					f.extend(d, p, rp, c.m, ft)
					f.checkO(d, p, rp, c.m, false) // the backward records its own barrier
				})
			}
		}
	}
}

// uploadMask uploads a 0/1 mask as the U8 keep mask the layers take.
func (f *fixture) uploadMask(mask []float64, m, in int) *vk.Tensor {
	t, err := f.Dev.NewTensor(dtype.U8, m, in)
	require.NoError(f.T, err)
	f.T.Cleanup(t.Release)
	b := make([]byte, len(mask))
	for i, v := range mask {
		b[i] = byte(v)
	}
	require.NoError(f.T, t.UploadBytes(b))
	return t
}

// share makes projections ps use the first one's dropout (axolotl's shared
// mask) and gives their twins its mask.
func share(ps []*Projection, rps []*ref.Proj) {
	for i := range ps[1:] {
		ps[i+1].Dropout = ps[0].Dropout
		rps[i+1].Mask, rps[i+1].P = rps[0].Mask, rps[0].P
	}
}

// QKV with a different extension mix on each projection, and with one
// dropout shared by all three (a single mask), against the reference.
func TestQKVExtensions(t *testing.T) {
	f := newFixture(t)
	mixes := [][3]features{
		{{dora: true, dropout: 0.2}, {loraBias: true, trainBias: true}, {dropout: 0.3, explicitMask: true}},
		{{dropout: 0.15}, {dropout: 0.15, dora: true}, {dropout: 0.15, loraBias: true}}, // shared below
	}
	for _, d := range dtype.Floats {
		for mi, mix := range mixes {
			t.Run(fmt.Sprintf("%s/mix%d", d, mi), func(t *testing.T) {
				f := f.inOwn(t)
				const m, in, q, kv, r = 19, 72, 96, 32, 7
				pq, rq := f.proj(d, q, in, r, 2.0)
				pk, rk := f.proj(d, kv, in, r, 0.37)
				pv, rv := f.proj(d, kv, in, r, 1.3)
				ps, rps := []*Projection{pq, pk, pv}, []*ref.Proj{rq, rk, rv}
				for i := range ps {
					f.extend(d, ps[i], rps[i], m, mix[i])
				}
				if mi == 1 {
					share(ps, rps)
				}
				x := f.Random(d, m*in, 1)
				gq, gk, gv := f.Random(d, m*q, 1), f.Random(d, m*kv, 1), f.Random(d, m*kv, 1)
				layer := &QKV{Engine: f.eng, Q: pq, K: pk, V: pv}
				rec := f.Recorder()
				yq, yk, yv, saved, err := layer.Forward(rec, f.Upload(d, x, m, in))
				require.NoError(t, err)
				defer saved.Release()
				f.Keep(yq, yk, yv)
				dx, grads, err := layer.Backward(rec, saved, f.Upload(d, gq, m, q), f.Upload(d, gk, m, kv), f.Upload(d, gv, m, kv))
				require.NoError(t, err)
				f.Keep(dx)
				f.keepGrads(grads[:]...)
				require.NoError(t, rec.Submit())
				wq, wk, wv := ref.QKVForward(x, m, rq, rk, rv)
				wdx, dq, dk, dv := ref.QKVBackward(x, gq, gk, gv, m, rq, rk, rv)
				bound := ref.Tolerance(d).Layer
				vktest.ExpectClose(t, "Q", f.Download(yq), wq, q, bound)
				vktest.ExpectClose(t, "K", f.Download(yk), wk, kv, bound)
				vktest.ExpectClose(t, "V", f.Download(yv), wv, kv, bound)
				vktest.ExpectClose(t, "dX", f.Download(dx), wdx, in, bound)
				f.checkGrads("q", grads[0], dq, rq, bound)
				f.checkGrads("k", grads[1], dk, rk, bound)
				f.checkGrads("v", grads[2], dv, rv, bound)
			})
		}
	}
}

// The gated MLP with extensions on every projection (dropout on down acts
// on h), and with gate and up sharing one mask, against the reference.
func TestMLPExtensions(t *testing.T) {
	f := newFixture(t)
	mixes := [][3]features{
		{{dora: true}, {dropout: 0.25, loraBias: true, trainBias: true}, {dropout: 0.2, dora: true}},
		{{dropout: 0.1, dora: true}, {dropout: 0.1}, {loraBias: true}}, // gate/up shared below
	}
	for _, act := range []Activation{SwiGLU, GEGLUTanh} {
		for _, d := range dtype.Floats {
			for mi, mix := range mixes {
				t.Run(fmt.Sprintf("%s/%s/mix%d", act, d, mi), func(t *testing.T) {
					f := f.inOwn(t)
					const m, h, i, r = 21, 48, 72, 7
					pg, rg := f.proj(d, i, h, r, 1.5)
					pu, ru := f.proj(d, i, h, r, 0.6)
					pd, rd := f.proj(d, h, i, r, 2.2)
					ps, rps := []*Projection{pg, pu, pd}, []*ref.Proj{rg, ru, rd}
					for j := range ps {
						f.extend(d, ps[j], rps[j], m, mix[j])
					}
					if mi == 1 {
						share(ps[:2], rps[:2])
					}
					x := f.Random(d, m*h, 1)
					gy := f.Random(d, m*h, 1)
					layer := &MLP{Engine: f.eng, Gate: pg, Up: pu, Down: pd, Act: act}
					rec := f.Recorder()
					y, saved, err := layer.Forward(rec, f.Upload(d, x, m, h))
					require.NoError(t, err)
					defer saved.Release()
					dx, grads, err := layer.Backward(rec, saved, f.Upload(d, gy, m, h))
					require.NoError(t, err)
					f.Keep(y, dx)
					f.keepGrads(grads[:]...)
					require.NoError(t, rec.Submit())
					wy, _, _ := ref.MLPForward(x, m, rg, ru, rd, act)
					wdx, dgate, dup, ddown := ref.MLPBackward(x, gy, m, rg, ru, rd, act)
					bound := ref.Tolerance(d).Layer
					vktest.ExpectClose(t, "Y", f.Download(y), wy, h, bound)
					vktest.ExpectClose(t, "dX", f.Download(dx), wdx, h, bound)
					f.checkGrads("gate", grads[0], dgate, rg, bound)
					f.checkGrads("up", grads[1], dup, ru, bound)
					f.checkGrads("down", grads[2], ddown, rd, bound)
				})
			}
		}
	}
}

// Bad extension settings are refused with a named error before anything is
// recorded, and the engine stays usable.
func TestExtensionErrors(t *testing.T) {
	f := newFixture(t)
	const d, m, in, out, r = dtype.F32, 9, 20, 12, 3
	cases := []struct {
		name string
		edit func(p *Projection)
		want string
	}{
		{"dropout of 1", func(p *Projection) { p.Dropout = &Dropout{P: 1} }, "dropout probability 1 must be in [0, 1)"},
		{"dropout NaN", func(p *Projection) { p.Dropout = &Dropout{P: math.NaN()} }, "dropout probability NaN"},
		{"mask shape", func(p *Projection) {
			p.Dropout = &Dropout{P: 0.5, Mask: f.uploadMask(make([]float64, m*(in-1)), m, in-1)}
		}, "dropout mask"},
		{"dora with lora_B bias", func(p *Projection) {
			p.Magnitude, p.LoRABias = f.Upload(d, f.Random(d, out, 1), out), f.Upload(d, f.Random(d, out, 1), out)
		}, "as PEFT refuses use_dora with lora_bias"},
		{"lora_B bias shape", func(p *Projection) { p.LoRABias = f.Upload(d, f.Random(d, out+1, 1), out+1) }, "lora_B bias"},
		{"magnitude dtype", func(p *Projection) { p.Magnitude = f.Upload(dtype.F16, f.Random(dtype.F16, out, 1), out) }, "DoRA magnitude"},
		{"trainable bias without bias", func(p *Projection) { p.BiasTrainable = true }, "BiasTrainable without a bias"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := f.in(t)
			p, rp := f.proj(d, out, in, r, 0.5)
			c.edit(p)
			rec := f.Recorder()
			_, _, err := (&O{Engine: f.eng, Proj: p}).Forward(rec, f.Upload(d, f.Random(d, m*in, 1), m, in))
			require.ErrorIs(t, err, ErrBadInput)
			require.ErrorContains(t, err, c.want)
			// The engine still runs a plain projection afterwards.
			f.checkO(d, &Projection{W: p.W, A: p.A, B: p.B, Scale: p.Scale}, rp, m, false)
		})
	}
}
