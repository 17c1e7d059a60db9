package lora

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// Benchmarks time GPU work with timestamps (not wall clock) and report
// gpu-ms/op and TFLOP/s, so `benchstat` can compare runs. Sizes are small
// enough for lavapipe; lorabench covers the model presets.

func benchGPU(b *testing.B, dev *vk.Device, flops float64, record func(rec *vk.Recorder) error) {
	rec, err := dev.NewRecorder()
	require.NoError(b, err)
	defer rec.Release()
	require.NoError(b, record(rec)) // warm-up: pipelines built, caches warm
	require.NoError(b, rec.Submit())
	var total float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0, err := rec.Timestamp()
		require.NoError(b, err)
		require.NoError(b, record(rec))
		t1, err := rec.Timestamp()
		require.NoError(b, err)
		require.NoError(b, rec.Submit())
		el, err := rec.Elapsed(t0, t1)
		require.NoError(b, err)
		total += el.Seconds()
	}
	b.ReportMetric(total/float64(b.N)*1e3, "gpu-ms/op")
	b.ReportMetric(flops*float64(b.N)/total/1e12, "TFLOP/s")
}

// benchTensor uploads fresh normal values (never zeros: they can time faster).
func benchTensor(b *testing.B, dev *vk.Device, rng *rand.Rand, d dtype.DType, shape ...int) *vk.Tensor {
	n := 1
	for _, s := range shape {
		n *= s
	}
	return vktest.Upload(b, dev, d, vktest.Random(rng, d, n, 0.1), shape...)
}

func BenchmarkMatmul(b *testing.B) {
	dev := vktest.Device(b)
	eng, err := NewEngine(dev, Options{})
	require.NoError(b, err)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, d := range dtype.Floats {
		for _, n := range []int{256, 512} {
			b.Run(fmt.Sprintf("%s/%d", d, n), func(b *testing.B) {
				x, w := benchTensor(b, dev, rng, d, n, n), benchTensor(b, dev, rng, d, n, n)
				c := benchTensor(b, dev, rng, d, n, n)
				benchGPU(b, dev, 2*float64(n*n*n), func(rec *vk.Recorder) error {
					return eng.MatmulTo(rec, c, Dense(x), Dense(w).T(), 1, 0)
				})
			})
		}
	}
}

func BenchmarkMLPForwardBackward(b *testing.B) {
	dev := vktest.Device(b)
	eng, err := NewEngine(dev, Options{})
	require.NoError(b, err)
	rng := rand.New(rand.NewPCG(3, 4))
	const m, h, i, r = 128, 256, 512, 16
	for _, d := range dtype.Floats {
		b.Run(d.String(), func(b *testing.B) {
			proj := func(out, in int) *Projection {
				return &Projection{W: Weight{Dense: benchTensor(b, dev, rng, d, out, in)},
					A: benchTensor(b, dev, rng, d, r, in), B: benchTensor(b, dev, rng, d, out, r), Scale: 2}
			}
			layer := &MLP{Engine: eng, Gate: proj(i, h), Up: proj(i, h), Down: proj(h, i), Act: SwiGLU}
			x, gy := benchTensor(b, dev, rng, d, m, h), benchTensor(b, dev, rng, d, m, h)
			fwd := 3 * (2*float64(m*h*i) + 2*float64(m*r*(h+i)))
			bwd := 3 * (2*float64(m*h*i) + 4*float64(m*r*(h+i)))
			benchGPU(b, dev, fwd+bwd, func(rec *vk.Recorder) error {
				y, saved, err := layer.Forward(rec, x)
				if err != nil {
					return err
				}
				rec.Barrier()
				dx, grads, err := layer.Backward(rec, saved, gy)
				if err != nil {
					return err
				}
				rec.Hold(y)
				rec.Hold(saved)
				rec.Hold(dx)
				for k := range grads {
					rec.Hold(&grads[k])
				}
				return nil
			})
		})
	}
}
