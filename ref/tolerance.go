package ref

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
)

// Tolerances are the largest RelErr a result stored in one dtype may have
// against the float64 reference, by how many times it was rounded to that
// dtype on the way. Every check in the project takes its bound from here
// (tests may scale one where they chain several layers and say why).
type Tolerances struct {
	// Product bounds one product or elementwise op whose inputs are exactly
	// representable in the dtype (RoundTo), accumulated in fp32 and rounded
	// once to the dtype: a matmul, X·Wᵀ + s·(X·Aᵀ)·Bᵀ, an add.
	Product float64
	// Layer bounds a layer's outputs and gradients (O, QKV, the gated MLP),
	// which pass through several roundings to the dtype: the [M, r]
	// products, f = act(e) before ⊙ g, h, de and dg.
	Layer float64
	// Conformance is the floor of the conformance vectors' tolerances: the
	// generator sets tol.expect.* = max(2·torch_err, Conformance), where
	// torch_err is plain PyTorch's error in the case dtype.
	Conformance float64
}

// tolerances: unit roundoff u is 2⁻²⁴ (f32), 2⁻¹¹ (f16) and 2⁻⁸ (bf16); a
// single rounding gives a relative Frobenius error near u/√3, so Product
// is about 4–8 such roundings (f16, bf16) or fp32 accumulation over long
// inner dimensions (f32), and Layer 4–5× Product.
var tolerances = map[dtype.DType]Tolerances{
	dtype.F32:  {Product: 2e-5, Layer: 1e-4, Conformance: 1e-5},
	dtype.F16:  {Product: 2e-3, Layer: 1e-2, Conformance: 2e-3},
	dtype.BF16: {Product: 1e-2, Layer: 4e-2, Conformance: 1.6e-2},
}

// Tolerance returns the tolerances of storage dtype d (F32, F16 or BF16).
// It panics on any other d: asking for the tolerance of a non-float type is
// a programming error, and a zero bound would fail silently elsewhere.
func Tolerance(d dtype.DType) Tolerances {
	t, ok := tolerances[d]
	if !ok {
		panic(fmt.Sprintf("ref: Tolerance: d = %v is not a float storage dtype (F32, F16, BF16)", d))
	}
	return t
}
