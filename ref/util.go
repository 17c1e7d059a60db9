package ref

import (
	"math/rand/v2"

	"github.com/vklora/vklora/dtype"
)

// Random returns n values drawn from the normal distribution N(0, scale²).
func Random(rng *rand.Rand, n int, scale float64) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = rng.NormFloat64() * scale
	}
	return xs
}

// ToFloat32 converts xs to float32, rounding to nearest even.
func ToFloat32(xs []float64) []float32 {
	out := make([]float32, len(xs))
	for i, x := range xs {
		out[i] = float32(x)
	}
	return out
}

// FromFloat32 widens xs to float64 (exact).
func FromFloat32(xs []float32) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(x)
	}
	return out
}

// RoundTo returns a copy of xs with every value rounded to the storage type
// d: first to float32, then (for F16, BF16) to d, each step to nearest even,
// and widened back. Going through float32 matches an engine that converts
// float32 data to d; it may differ from a direct float64 → d rounding by one
// ulp of d in rare double-rounding ties. F32 (and U8) round to float32 only.
func RoundTo(d dtype.DType, xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(dtype.Round(d, float32(x)))
	}
	return out
}
