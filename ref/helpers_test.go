package ref

import (
	"math"
	"math/rand/v2"
	"testing"
)

// fdStep is the central-difference step; fdTol the largest relative
// Frobenius error accepted between analytic and numerical gradients. With
// h = 1e-5 the truncation error (~h²) and the rounding error (~ε·L/h) are
// both near 1e-10, and the observed worst case is ~2e-8: a wrong gradient
// (a missing factor, a transposed operand) is off by far more than 1e-6.
const (
	fdStep = 1e-5
	fdTol  = 1e-6
)

func newRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }

// randProj returns a projection [out, in] with a rank-r adapter (none when
// r == 0). B is non-zero on purpose: with PEFT's B = 0 a wrong dA path stays
// invisible.
func randProj(rng *rand.Rand, out, in, r int, s float64) *Proj {
	p := &Proj{Out: out, In: in, R: r, S: s, W: Random(rng, out*in, 1/math.Sqrt(float64(in)))}
	if r > 0 {
		p.A = Random(rng, r*in, 1/math.Sqrt(float64(in)))
		p.B = Random(rng, out*r, 1/math.Sqrt(float64(r)))
	}
	return p
}

// numGrad returns dL/dθ by central differences, perturbing theta in place
// (and restoring it) around calls of loss.
func numGrad(theta []float64, loss func() float64) []float64 {
	g := make([]float64, len(theta))
	for i, t := range theta {
		theta[i] = t + fdStep
		lp := loss()
		theta[i] = t - fdStep
		lm := loss()
		theta[i] = t
		g[i] = (lp - lm) / (2 * fdStep)
	}
	return g
}

func dot(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// checkClose fails t when RelErr(got, want) > tol, naming the worst elements.
func checkClose(t *testing.T, name string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: len %d, want %d", name, len(got), len(want))
		return
	}
	if err := RelErr(got, want); err > tol {
		t.Errorf("%s: rel err %.3g > %g; worst: %s", name, err, tol, Mismatches(got, want, 3))
	}
}

// scales are the LoRA scales tried for rank r: two plain numbers and the
// rsLoRA alpha/√r with alpha = 16.
func scales(r int) []float64 { return []float64{0.37, 2.0, 16 / math.Sqrt(float64(r))} }
