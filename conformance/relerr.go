package conformance

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// RelErr is ‖got − want‖ / ‖want‖ over all elements, in float64 (sqrt of
// sums of squares), as conformance.md defines it; ‖got − want‖ when want is
// all zero, as the generator does. Slices of different lengths give +Inf,
// so a shape bug can never pass.
func RelErr[T float32 | float64](got []T, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - float64(w)
		num += d * d
		den += float64(w) * float64(w)
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num) / math.Sqrt(den)
}

// Compare checks got against c.Expect[key] and returns nil iff
// RelErr <= c.Tol[key]. The error names the case, the error and tolerance,
// and the elements that differ most, for test failure messages.
func Compare[T float32 | float64](c *Case, key string, got []T) error {
	want, ok := c.Expect[key]
	if !ok {
		return fmt.Errorf("conformance: %s: no expect.%s", c.Path, key)
	}
	if len(got) != len(want.Data) {
		return fmt.Errorf("conformance: %s: %s has %d values, expect.%s has shape %v (%d)", c.Path, key, len(got), key, want.Shape, len(want.Data))
	}
	e, tol := RelErr(got, want.Data), c.Tol[key]
	if e <= tol {
		return nil
	}
	idx := make([]int, len(got))
	for i := range idx {
		idx[i] = i
	}
	diff := func(i int) float64 { return math.Abs(float64(got[i]) - float64(want.Data[i])) }
	sort.SliceStable(idx, func(a, b int) bool { return diff(idx[a]) > diff(idx[b]) })
	var worst []string
	cols := want.Shape[len(want.Shape)-1]
	for _, i := range idx[:min(4, len(idx))] {
		worst = append(worst, fmt.Sprintf("[%d,%d] got %g want %g", i/cols, i%cols, float64(got[i]), want.Data[i]))
	}
	return fmt.Errorf("conformance: %s: %s rel err %.3g > tol %.3g (torch %.3g); largest differences: %s",
		c.Path, key, e, tol, c.TorchErr[key], strings.Join(worst, ", "))
}
