package ref

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// RelErr returns the relative Frobenius error ‖got − want‖ / ‖want‖ computed
// in float64, the measure of the conformance vectors; when ‖want‖ is 0 it
// returns ‖got‖. A NaN anywhere makes the result +Inf, so that both
// `err <= tol` and `err > tol` checks treat it as a failure. got and want
// must have the same length.
func RelErr(got, want []float64) float64 {
	checkLen("RelErr", "got", got, len(want))
	var diff, norm float64
	for i, w := range want {
		d := got[i] - w
		diff += d * d
		norm += w * w
	}
	r := math.Sqrt(diff)
	if norm != 0 {
		r /= math.Sqrt(norm)
	}
	if math.IsNaN(r) {
		return math.Inf(1)
	}
	return r
}

// Mismatches describes the n elements with the largest |got − want| (NaN
// counts as largest), by flat index, for test failure messages:
//
//	[17] got 0.51 want 0.5 (diff 0.01); [3] got …
func Mismatches(got, want []float64, n int) string {
	return mismatches(got, want, 0, n)
}

// MismatchesRC is Mismatches for a matrix with cols columns: each element is
// named [row,col], which makes tile-edge bugs of a GPU kernel easy to spot.
func MismatchesRC(got, want []float64, cols, n int) string {
	return mismatches(got, want, cols, n)
}

func mismatches(got, want []float64, cols, n int) string {
	checkLen("Mismatches", "got", got, len(want))
	idx := make([]int, len(want))
	for i := range idx {
		idx[i] = i
	}
	dev := func(i int) float64 {
		d := math.Abs(got[i] - want[i])
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		return d
	}
	sort.SliceStable(idx, func(a, b int) bool { return dev(idx[a]) > dev(idx[b]) })
	var sb strings.Builder
	for _, i := range idx[:min(n, len(idx))] {
		if sb.Len() > 0 {
			sb.WriteString("; ")
		}
		if cols > 0 {
			fmt.Fprintf(&sb, "[%d,%d]", i/cols, i%cols)
		} else {
			fmt.Fprintf(&sb, "[%d]", i)
		}
		fmt.Fprintf(&sb, " got %.9g want %.9g (diff %.3g)", got[i], want[i], got[i]-want[i])
	}
	return sb.String()
}
