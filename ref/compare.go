package ref

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Mismatches describes the n elements with the largest |got − want| (NaN
// counts as largest), by flat index, for test failure messages:
//
//	[17] got 0.51 want 0.5 (diff 0.01); [3] got …
//
// got and want must have the same length: it panics otherwise, since a
// caller lists mismatches only after checking the shapes (RelErr is +Inf
// for a length mismatch).
func Mismatches[G, W Float](got []G, want []W, n int) string {
	return mismatches(got, want, 0, n)
}

// MismatchesRC is Mismatches for a matrix with cols columns: each element is
// named [row,col], which makes tile-edge bugs of a GPU kernel easy to spot.
func MismatchesRC[G, W Float](got []G, want []W, cols, n int) string {
	return mismatches(got, want, cols, n)
}

func mismatches[G, W Float](got []G, want []W, cols, n int) string {
	if len(got) != len(want) {
		panic(fmt.Sprintf("ref: Mismatches: len(got) = %d, want %d", len(got), len(want)))
	}
	idx := make([]int, len(want))
	for i := range idx {
		idx[i] = i
	}
	dev := func(i int) float64 {
		d := math.Abs(float64(got[i]) - float64(want[i]))
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
		g, w := float64(got[i]), float64(want[i])
		fmt.Fprintf(&sb, " got %.9g want %.9g (diff %.3g)", g, w, g-w)
	}
	return sb.String()
}
