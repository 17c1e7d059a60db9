package lora

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

func TestMain(m *testing.M) { vktest.Main(m) }

// tol is the relative-error bound per storage dtype for results whose
// inputs are exactly representable: fp32 accumulation, one final rounding.
var tol = map[dtype.DType]float64{dtype.F32: 2e-5, dtype.F16: 2e-3, dtype.BF16: 1e-2}

type fixture struct {
	t   *testing.T
	dev *vk.Device
	eng *Engine
	rng *rand.Rand
}

func newFixture(t *testing.T) *fixture {
	dev := vktest.Device(t)
	eng, err := NewEngine(dev)
	require.NoError(t, err)
	return &fixture{t: t, dev: dev, eng: eng, rng: rand.New(rand.NewPCG(uint64(len(t.Name())), 42))}
}

// random returns n fresh normal values times scale, already rounded to d so
// the float64 reference sees exactly what the GPU stores.
func (f *fixture) random(d dtype.DType, n int, scale float64) []float64 {
	return ref.RoundTo(d, ref.Random(f.rng, n, scale))
}

// upload makes a tensor of d from float64 values (rounded to d).
func (f *fixture) upload(d dtype.DType, xs []float64, shape ...int) *vk.Tensor {
	t, err := f.dev.TensorFrom(d, ref.ToFloat32(xs), shape...)
	require.NoError(f.t, err)
	f.t.Cleanup(t.Release)
	return t
}

// poisoned makes an output tensor pre-filled with NaN so unwritten elements fail.
func (f *fixture) poisoned(d dtype.DType, shape ...int) *vk.Tensor {
	t, err := f.dev.NewTensor(d, shape...)
	require.NoError(f.t, err)
	f.t.Cleanup(t.Release)
	n := t.Numel()
	nan := make([]float32, n)
	for i := range nan {
		nan[i] = float32(nanValue())
	}
	require.NoError(f.t, t.Upload(nan))
	return t
}

func (f *fixture) download(t *vk.Tensor) []float64 {
	xs, err := t.Float32()
	require.NoError(f.t, err)
	return ref.FromFloat32(xs)
}

func (f *fixture) recorder() *vk.Recorder {
	rec, err := f.dev.NewRecorder()
	require.NoError(f.t, err)
	f.t.Cleanup(rec.Release)
	return rec
}

// expectClose fails unless got is within tolerance of want.
func expectClose(t *testing.T, what string, got, want []float64, cols int, bound float64) {
	t.Helper()
	err := ref.RelErr(got, want)
	if !(err <= bound) {
		t.Fatalf("%s: relative error %.3g > %.3g\n%s", what, err, bound, ref.MismatchesRC(got, want, cols, 5))
	}
}
