package ref

import (
	"math"

	"github.com/vklora/vklora/activation"
)

// Activation is the gate activation of a gated MLP, h = act(e) ⊙ g; the
// type, its names and the model-config mapping live in package activation,
// which the engine imports too, so the two can never disagree. The alias and
// the constants keep the reference's signatures self-describing.
type Activation = activation.Activation

// The gate activations: SwiGLU (silu), GEGLU (erf GELU), GEGLUTanh (tanh
// GELU, Gemma's gelu_pytorch_tanh).
const (
	SwiGLU    = activation.SwiGLU
	GEGLU     = activation.GEGLU
	GEGLUTanh = activation.GEGLUTanh
)

// ParseActivation is activation.Parse: the conformance-vector name
// ("swiglu", "geglu", "geglu_tanh") to an Activation.
func ParseActivation(name string) (Activation, error) { return activation.Parse(name) }

// sqrt2OverPi is √(2/π); invSqrt2Pi is 1/√(2π).
const (
	sqrt2OverPi = 0.7978845608028654
	invSqrt2Pi  = 0.3989422804014327
	geluCubic   = 0.044715
)

// sigmoid is σ(x) = 1/(1+e^−x), written so that exp never overflows and
// σ of a large negative x keeps full relative precision.
func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	z := math.Exp(x)
	return z / (1 + z)
}

// Act returns act(e) for the activation a. It panics on an invalid a.
//
// The GELU forms use 1 + erf(x) = erfc(−x) and 1 + tanh(u) = 2·σ(2u), equal
// in exact arithmetic but free of cancellation for negative e.
func Act(a Activation, e float64) float64 {
	switch a {
	case SwiGLU:
		return e * sigmoid(e)
	case GEGLU:
		return 0.5 * e * math.Erfc(-e/math.Sqrt2)
	case GEGLUTanh:
		u := sqrt2OverPi * (e + geluCubic*e*e*e)
		return e * sigmoid(2*u) // 0.5·e·(1 + tanh u)
	}
	panic("ref: Act: invalid activation " + a.String())
}

// ActGrad returns act′(e) = d act(e)/de, as docs/LORA-MATH.md writes them:
//
//	SwiGLU:    σ(e)·(1 + e·(1 − σ(e)))
//	GEGLU:     0.5·(1 + erf(e/√2)) + e·exp(−e²/2)/√(2π)
//	GEGLUTanh: 0.5·T + 0.5·e·(1 − tanh²u)·√(2/π)·(1 + 3·0.044715·e²),
//	           u = √(2/π)·(e + 0.044715·e³), T = 1 + tanh u
//
// with 1 − tanh²u = 4·σ(2u)·σ(−2u). It panics on an invalid a.
func ActGrad(a Activation, e float64) float64 {
	switch a {
	case SwiGLU:
		s := sigmoid(e)
		return s * (1 + e*sigmoid(-e))
	case GEGLU:
		return 0.5*math.Erfc(-e/math.Sqrt2) + e*math.Exp(-e*e/2)*invSqrt2Pi
	case GEGLUTanh:
		u := sqrt2OverPi * (e + geluCubic*e*e*e)
		sp, sm := sigmoid(2*u), sigmoid(-2*u)
		t := 2 * sp // T = 1 + tanh u
		sech2 := 4 * sp * sm
		return 0.5*t + 0.5*e*sech2*sqrt2OverPi*(1+3*geluCubic*e*e)
	}
	panic("ref: ActGrad: invalid activation " + a.String())
}
