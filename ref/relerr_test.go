package ref

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRelErrValues(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want []float64
		err       float64
	}{
		{"equal", []float64{1, -2, 3}, []float64{1, -2, 3}, 0},
		{"3-4-5", []float64{3, 5}, []float64{3, 4}, 0.2},     // ‖(0,1)‖/‖(3,4)‖
		{"sign flip", []float64{-3, -4}, []float64{3, 4}, 2}, // ‖(−6,−8)‖/5
		{"got zero", []float64{0, 0}, []float64{3, 4}, 1},
		{"both zero", []float64{0, 0}, []float64{0, 0}, 0},
		{"signed zeros", []float64{math.Copysign(0, -1)}, []float64{0}, 0},
		{"empty", nil, nil, 0},
		// Squares of these overflow (1e300²) or underflow (1e-300²) in
		// float64 unless the sums are scaled.
		{"huge", []float64{3e300, 5e300}, []float64{3e300, 4e300}, 0.2},
		{"tiny", []float64{3e-300, 5e-300}, []float64{3e-300, 4e-300}, 0.2},
		{"subnormal", []float64{math.Ldexp(2, -1074)}, []float64{math.Ldexp(1, -1074)}, 1},
	} {
		require.InDelta(t, c.err, RelErr(c.got, c.want), 1e-15, c.name)
	}
}

// TestRelErrNeverPasses lists results that must fail any finite tolerance:
// RelErr is +Inf, so both err <= tol and !(err > tol) reject them.
func TestRelErrNeverPasses(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	for _, c := range []struct {
		name      string
		got, want []float64
	}{
		{"longer got", []float64{1, 2}, []float64{1}},
		{"shorter got", []float64{1}, []float64{1, 2}},
		{"nil got", nil, []float64{1}},
		{"NaN got", []float64{1, nan}, []float64{1, 2}},
		{"NaN want", []float64{1, 2}, []float64{nan, 2}},
		{"NaN both", []float64{nan, 2}, []float64{nan, 2}},
		{"NaN, zero want", []float64{nan}, []float64{0}},
		{"Inf got", []float64{1, inf}, []float64{1, 2}},
		{"Inf want", []float64{1, 2}, []float64{1, inf}},
		{"opposite infinities", []float64{-inf}, []float64{inf}},
		{"zero want, non-zero got", []float64{3, 4}, []float64{0, 0}},
		{"zero want, tiny got", []float64{0, 5e-324}, []float64{0, 0}},
		{"matching Inf, zero want, non-zero got", []float64{inf, 1}, []float64{inf, 0}},
	} {
		got := RelErr(c.got, c.want)
		require.True(t, math.IsInf(got, 1), "%s: %g", c.name, got)
	}
}

func TestRelErrMatchingInfinities(t *testing.T) {
	inf := math.Inf(1)
	// Matching infinities agree and leave both norms: the rest is 3-4-5.
	require.InDelta(t, 0.2, RelErr([]float64{inf, 3, -inf, 5}, []float64{inf, 3, -inf, 4}), 1e-15)
	require.Equal(t, 0.0, RelErr([]float64{inf, -inf}, []float64{inf, -inf}))
	require.Equal(t, 0.0, RelErr([]float32{float32(inf), 0}, []float64{inf, 0}))
}

// TestRelErrMixedTypes covers the element types of every caller: device
// results (float32) against float64 references and float32 vectors.
func TestRelErrMixedTypes(t *testing.T) {
	require.Equal(t, 0.0, RelErr([]float32{1, 2}, []float32{1, 2}))
	require.InDelta(t, 0.16, RelErr([]float64{3, 4.8}, []float32{3, 4}), 1e-15) // ‖(0, 0.8)‖ / ‖(3, 4)‖
	require.InDelta(t, 0.2, RelErr([]float32{3, 5}, []float64{3, 4}), 1e-15)
	// float32 NaN and length mismatches behave as in float64.
	require.True(t, math.IsInf(RelErr([]float32{float32(math.NaN())}, []float32{1}), 1))
	require.True(t, math.IsInf(RelErr([]float32{1}, []float32{1, 2}), 1))
	// Sums run in float64: float32 squares of 1e30 would overflow.
	require.InDelta(t, 0.2, RelErr([]float32{3e30, 5e30}, []float32{3e30, 4e30}), 1e-7)
}
