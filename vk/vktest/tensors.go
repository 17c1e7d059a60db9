package vktest

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
)

// RNG returns a generator seeded from the test's name: reproducible, and
// each test draws its own values.
func RNG(t testing.TB) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(t.Name()))
	return rand.New(rand.NewPCG(h.Sum64(), 7))
}

// Random returns n normal values times scale, rounded to d so that the
// float64 reference sees exactly what the GPU stores.
func Random(rng *rand.Rand, d dtype.DType, n int, scale float64) []float64 {
	return ref.RoundTo(d, ref.Random(rng, n, scale))
}

// Upload makes a tensor of d holding xs (rounded to d), released when the
// test ends.
func Upload(t testing.TB, dev *vk.Device, d dtype.DType, xs []float64, shape ...int) *vk.Tensor {
	t.Helper()
	ten, err := dev.TensorFrom(d, ref.ToFloat32(xs), shape...)
	require.NoError(t, err)
	t.Cleanup(ten.Release)
	return ten
}

// Poisoned makes an output tensor filled with NaN, so that any element a
// kernel fails to write fails the comparison.
func Poisoned(t testing.TB, dev *vk.Device, d dtype.DType, shape ...int) *vk.Tensor {
	t.Helper()
	ten, err := dev.NewTensor(d, shape...)
	require.NoError(t, err)
	t.Cleanup(ten.Release)
	nan := make([]float32, ten.Numel())
	for i := range nan {
		nan[i] = float32(math.NaN())
	}
	require.NoError(t, ten.Upload(nan))
	return ten
}

// Download reads a tensor back as float64.
func Download(t testing.TB, ten *vk.Tensor) []float64 {
	t.Helper()
	require.NotNil(t, ten, "tensor")
	xs, err := ten.Float32()
	require.NoError(t, err)
	return ref.FromFloat32(xs)
}

// Recorder makes a recorder released when the test ends.
func Recorder(t testing.TB, dev *vk.Device) *vk.Recorder {
	t.Helper()
	rec, err := dev.NewRecorder()
	require.NoError(t, err)
	t.Cleanup(rec.Release)
	return rec
}

// ExpectClose fails the test unless ‖got − want‖/‖want‖ ≤ bound, listing the
// worst elements as [row,col] of a matrix with cols columns.
func ExpectClose(t testing.TB, what string, got, want []float64, cols int, bound float64) {
	t.Helper()
	if err := ref.RelErr(got, want); !(err <= bound) {
		t.Fatalf("%s: relative error %.3g > %.3g\n%s", what, err, bound, ref.MismatchesRC(got, want, cols, 5))
	}
}

// RandomProjection makes a random LoRA projection on the device, W [out, in],
// A [r, in] and B [out, r] (A and B nil when r = 0), with its exact float64
// twin. B is non-zero so that a wrong dA stays visible.
func RandomProjection(t testing.TB, dev *vk.Device, rng *rand.Rand, d dtype.DType, out, in, r int, s float64) (w, a, b *vk.Tensor, rp *ref.Proj) {
	t.Helper()
	rp = &ref.Proj{W: Random(rng, d, out*in, 1/math.Sqrt(float64(in))), Out: out, In: in, R: r, S: s}
	w = Upload(t, dev, d, rp.W, out, in)
	if r > 0 {
		rp.A = Random(rng, d, r*in, 1/math.Sqrt(float64(in)))
		rp.B = Random(rng, d, out*r, 0.5)
		a, b = Upload(t, dev, d, rp.A, r, in), Upload(t, dev, d, rp.B, out, r)
	}
	return w, a, b, rp
}

// RandomBias gives the projection twin rp a random base bias [rp.Out] of
// magnitude about that of its outputs (so a missing or misplaced bias fails
// any tolerance) and uploads it.
func RandomBias(t testing.TB, dev *vk.Device, rng *rand.Rand, d dtype.DType, rp *ref.Proj) *vk.Tensor {
	t.Helper()
	rp.Bias = Random(rng, d, rp.Out, 1)
	return Upload(t, dev, d, rp.Bias, rp.Out)
}
