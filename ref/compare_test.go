package ref

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMismatches(t *testing.T) {
	want := []float64{0, 1, 2, 3, 4, 5}
	got := []float64{0, 1.5, 2, 2, 4, math.NaN()}
	require.Equal(t,
		"[5] got NaN want 5 (diff NaN); [3] got 2 want 3 (diff -1); [1] got 1.5 want 1 (diff 0.5)",
		Mismatches(got, want, 3))
	require.Equal(t,
		"[2,1] got NaN want 5 (diff NaN); [1,1] got 2 want 3 (diff -1)",
		MismatchesRC(got, want, 2, 2))
	require.Equal(t, "", Mismatches([]float64{}, []float64{}, 3))
	require.Len(t, splitSemi(Mismatches(got, want, 100)), len(want))
	// Device results are float32; the listing widens them exactly.
	require.Equal(t, "[1] got 1.5 want 1 (diff 0.5)",
		Mismatches([]float32{0, 1.5}, []float64{0, 1}, 1))
	require.PanicsWithValue(t, "ref: Mismatches: len(got) = 1, want 2", func() { Mismatches([]float64{1}, want[:2], 1) })
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
