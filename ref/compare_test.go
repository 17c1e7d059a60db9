package ref

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRelErr(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	for _, c := range []struct {
		name      string
		got, want []float64
		err       float64
	}{
		{"equal", []float64{1, -2, 3}, []float64{1, -2, 3}, 0},
		{"3-4-5", []float64{3, 5}, []float64{3, 4}, 0.2},     // ‖(0,1)‖/‖(3,4)‖
		{"sign flip", []float64{-3, -4}, []float64{3, 4}, 2}, // ‖(−6,−8)‖/5
		{"zero want", []float64{3, 4}, []float64{0, 0}, 5},   // ‖got‖
		{"both zero", []float64{0, 0}, []float64{0, 0}, 0},
		{"empty", nil, nil, 0},
		{"NaN got", []float64{1, nan}, []float64{1, 2}, inf}, // must fail err <= tol
		{"Inf got", []float64{1, inf}, []float64{1, 2}, inf},
		{"NaN want", []float64{1, 2}, []float64{nan, 2}, inf},
		{"NaN, zero want", []float64{nan}, []float64{0}, inf},
	} {
		got := RelErr(c.got, c.want)
		require.InDelta(t, c.err, got, 1e-15, c.name)
		if math.IsInf(c.err, 1) {
			require.True(t, math.IsInf(got, 1), c.name)
		}
	}
	require.Panics(t, func() { RelErr([]float64{1}, []float64{1, 2}) })
}

func TestMismatches(t *testing.T) {
	want := []float64{0, 1, 2, 3, 4, 5}
	got := []float64{0, 1.5, 2, 2, 4, math.NaN()}
	require.Equal(t,
		"[5] got NaN want 5 (diff NaN); [3] got 2 want 3 (diff -1); [1] got 1.5 want 1 (diff 0.5)",
		Mismatches(got, want, 3))
	require.Equal(t,
		"[2,1] got NaN want 5 (diff NaN); [1,1] got 2 want 3 (diff -1)",
		MismatchesRC(got, want, 2, 2))
	require.Equal(t, "", Mismatches(nil, nil, 3))
	require.Len(t, splitSemi(Mismatches(got, want, 100)), len(want))
}

func splitSemi(s string) []string {
	var out []string
	start := 0
	for i := 0; i+1 < len(s); i++ {
		if s[i] == ';' && s[i+1] == ' ' {
			out = append(out, s[start:i])
			start = i + 2
		}
	}
	return append(out, s[start:])
}
