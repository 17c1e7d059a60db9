package conformance

import (
	"fmt"

	"github.com/vklora/vklora/ref"
)

// Compare checks got against c.Expect[key] and returns nil iff
// ref.RelErr(got, expect) <= c.Tol[key]. The error names the case, the
// error and tolerance, and the elements that differ most as [row,col], for
// test failure messages.
func Compare[T float32 | float64](c *Case, key string, got []T) error {
	want, ok := c.Expect[key]
	if !ok {
		return fmt.Errorf("conformance: %s: no expect.%s", c.Path, key)
	}
	if len(got) != len(want.Data) {
		return fmt.Errorf("conformance: %s: %s has %d values, expect.%s has shape %v (%d)", c.Path, key, len(got), key, want.Shape, len(want.Data))
	}
	e, tol := ref.RelErr(got, want.Data), c.Tol[key]
	if e <= tol {
		return nil
	}
	cols := want.Shape[len(want.Shape)-1]
	return fmt.Errorf("conformance: %s: %s rel err %.3g > tol %.3g (torch %.3g); largest differences: %s",
		c.Path, key, e, tol, c.TorchErr[key], ref.MismatchesRC(got, want.Data, cols, 4))
}
