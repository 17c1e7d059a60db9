package ref

import "math"

// Float is an element type RelErr and Mismatches accept: results come back
// from the device as float32, references are float64, and conformance
// vectors store float32.
type Float interface{ ~float32 | ~float64 }

// RelErr returns the relative Frobenius error ‖got − want‖ / ‖want‖ over all
// elements, summed in float64: the one measure every tolerance of the engine
// (Tolerance, the conformance vectors' tol.expect.*) bounds. Its edge cases
// are defined so that a broken result can never pass a check of the form
// err <= tol, whichever way the check is written:
//
//   - len(got) != len(want): +Inf (a shape bug fails, it does not panic).
//   - A NaN anywhere in got or want: +Inf, even against a NaN at the same
//     index (a NaN in got never passes; a NaN in want is a broken oracle).
//   - An infinity: +Inf, unless got and want hold the same infinity (same
//     sign) at that index; such elements agree exactly and are left out of
//     both norms, so overflow that matches the reference's is not an error.
//   - ‖want‖ = 0 (all zeros, or only matching infinities): 0 when got is
//     zero there too, else +Inf (no relative scale to measure against).
//
// The sums are scaled by a power of two taken from the largest magnitude,
// so neither huge nor tiny finite values overflow or underflow them; the
// result is never NaN.
func RelErr[G, W Float](got []G, want []W) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var big float64 // largest finite |value| of either slice
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if math.IsNaN(g) || math.IsNaN(w) {
			return math.Inf(1)
		}
		if math.IsInf(g, 0) || math.IsInf(w, 0) {
			if g != w {
				return math.Inf(1)
			}
			continue
		}
		big = max(big, math.Abs(g), math.Abs(w))
	}
	if big == 0 {
		return 0 // every element is zero or a matching infinity in both
	}
	// Scaling by 2^-e is exact; it only loses elements below ~2^-1074·big,
	// which cannot change the result.
	_, e := math.Frexp(big)
	var diff, norm float64
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if math.IsInf(g, 0) {
			continue
		}
		g, w = math.Ldexp(g, -e), math.Ldexp(w, -e)
		diff += (g - w) * (g - w)
		norm += w * w
	}
	if norm == 0 {
		return math.Inf(1) // want is zero but got is not (big > 0)
	}
	return math.Sqrt(diff) / math.Sqrt(norm)
}
