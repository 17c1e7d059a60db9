package ref

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vklora/vklora/dtype"
)

func TestRandom(t *testing.T) {
	a := Random(newRNG(7), 20000, 3)
	require.Equal(t, a, Random(newRNG(7), 20000, 3), "same seed, same values")
	require.NotEqual(t, a, Random(newRNG(8), 20000, 3))
	var sum, sq float64
	for _, v := range a {
		sum += v
		sq += v * v
	}
	mean := sum / float64(len(a))
	std := math.Sqrt(sq/float64(len(a)) - mean*mean)
	require.InDelta(t, 0, mean, 0.1)
	require.InDelta(t, 3, std, 0.1)
}

func TestFloat32Conversion(t *testing.T) {
	xs := []float64{0.1, -2.5, 1e-40, math.Inf(-1)}
	f := ToFloat32(xs)
	require.Equal(t, []float32{0.1, -2.5, float32(1e-40), float32(math.Inf(-1))}, f)
	back := FromFloat32(f)
	require.Equal(t, float64(float32(0.1)), back[0])
	require.Equal(t, f, ToFloat32(back), "float32 → float64 → float32 is exact")
}

func TestRoundTo(t *testing.T) {
	p := func(e int) float64 { return math.Ldexp(1, e) }
	xs := []float64{0.1, 1 + p(-8), 1 + 3*p(-8), 1 + p(-11), 1 + 3*p(-11), -1.75}
	require.Equal(t, []float64{float64(float32(0.1)), 1 + p(-8), 1 + 3*p(-8), 1 + p(-11), 1 + 3*p(-11), -1.75},
		RoundTo(dtype.F32, xs))
	// bf16 keeps 7 fraction bits: 1 + 2⁻⁸ is a tie and goes to even (1);
	// 1 + 3·2⁻⁸ ties between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶ (even).
	bf := RoundTo(dtype.BF16, xs)
	require.Equal(t, []float64{0.10009765625, 1, 1 + p(-6), 1, 1, -1.75}, bf)
	// f16 keeps 10 fraction bits: 1 + 2⁻¹¹ ties to 1, 1 + 3·2⁻¹¹ to 1 + 2⁻⁹.
	h := RoundTo(dtype.F16, xs)
	require.Equal(t, []float64{0.0999755859375, 1 + p(-8), 1 + 3*p(-8), 1, 1 + p(-9), -1.75}, h)
	require.Equal(t, 0.1, xs[0], "input untouched")
}
