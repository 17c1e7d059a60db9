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
		v := append([]float64(nil), rp.W...)
		ref.MatmulAcc(v, rp.B, rp.A, rp.Out, rp.In, rp.R, false, false, rp.S, 1)
		mag := make([]float64, rp.Out)
		for o := range mag {
			var n2 float64
			for _, w := range v[o*rp.In : (o+1)*rp.In] {
				n2 += w * w
			}
			mag[o] = math.Sqrt(n2) * (0.5 + f.RNG.Float64())
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
					x := f.Random(d, c.m*c.in, 1)
					gy := f.Random(d, c.m*c.out, 1)
					layer := &O{Engine: f.eng, Proj: p}
					rec := f.Recorder()
					y, saved, err := layer.Forward(rec, f.Upload(d, x, c.m, c.in))
					require.NoError(t, err)
					defer saved.Release()
					f.Keep(y)
					dx, grads, err := layer.Backward(rec, saved, f.Upload(d, gy, c.m, c.out))
					require.NoError(t, err)
					f.Keep(dx)
					f.keepGrads(grads)
					require.NoError(t, rec.Submit())
					wantDX, wantG := ref.LinearBackward(x, gy, c.m, rp)
					bound := ref.Tolerance(d).Layer
					vktest.ExpectClose(t, "Y", f.Download(y), ref.LinearForward(x, c.m, rp), c.out, bound)
					vktest.ExpectClose(t, "dX", f.Download(dx), wantDX, c.in, bound)
					f.checkGrads("o", grads, wantG, rp, bound)
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
