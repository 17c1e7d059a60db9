package ref

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
)

func TestToleranceOrder(t *testing.T) {
	prev := Tolerances{}
	for _, d := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
		tol := Tolerance(d)
		// A layer rounds more often than a product; a coarser dtype allows more.
		require.Greater(t, tol.Layer, tol.Product, "%v", d)
		require.Greater(t, tol.Product, prev.Product, "%v", d)
		require.Greater(t, tol.Layer, prev.Layer, "%v", d)
		require.Greater(t, tol.Conformance, prev.Conformance, "%v", d)
		prev = tol
	}
	require.PanicsWithValue(t, "ref: Tolerance: d = u8 is not a float storage dtype (F32, F16, BF16)", func() { Tolerance(dtype.U8) })
	require.Panics(t, func() { Tolerance(0) })
}

// TestProductToleranceAdmitsOneRounding checks that the 16-bit bounds
// leave room for the one rounding of a product's result: rounding random
// data to the dtype costs less than half the bound.
func TestProductToleranceAdmitsOneRounding(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	xs := Random(rng, 4096, 1)
	for _, d := range []dtype.DType{dtype.F16, dtype.BF16} {
		e := RelErr(RoundTo(d, xs), xs)
		tol := Tolerance(d).Product
		require.Less(t, e, tol/2, "%v: one rounding %.3g", d, e)
		require.Greater(t, e, tol/20, "%v: one rounding %.3g: is the bound too loose?", d, e)
	}
}
