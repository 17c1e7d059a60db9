package ref

import (
	"fmt"
	"math"
)

// Activation is the gate activation of a gated MLP: h = act(e) ⊙ g.
// The zero value is invalid, so a forgotten setting is caught rather than
// silently becoming SwiGLU.
type Activation int

const (
	// SwiGLU: act(e) = e·σ(e) (SiLU; HF "silu", "swish"). Llama, Mistral, Qwen.
	SwiGLU Activation = iota + 1
	// GEGLU: act(e) = 0.5·e·(1 + erf(e/√2)), exact GELU (HF "gelu").
	GEGLU
	// GEGLUTanh: act(e) = 0.5·e·(1 + tanh(√(2/π)·(e + 0.044715·e³))), the tanh
	// approximation of GELU (HF "gelu_pytorch_tanh", "gelu_new"). Gemma.
	GEGLUTanh
)

// String returns the conformance-vector name: "swiglu", "geglu", "geglu_tanh".
func (a Activation) String() string {
	switch a {
	case SwiGLU:
		return "swiglu"
	case GEGLU:
		return "geglu"
	case GEGLUTanh:
		return "geglu_tanh"
	}
	return fmt.Sprintf("Activation(%d)", int(a))
}

// Valid reports whether a is one of the defined activations.
func (a Activation) Valid() bool { return a >= SwiGLU && a <= GEGLUTanh }

// ParseActivation turns a conformance-vector name ("swiglu", "geglu",
// "geglu_tanh"; the inverse of String) into an Activation.
func ParseActivation(name string) (Activation, error) {
	for _, a := range []Activation{SwiGLU, GEGLU, GEGLUTanh} {
		if name == a.String() {
			return a, nil
		}
	}
	return 0, fmt.Errorf("ref: unknown activation %q (accepted: swiglu, geglu, geglu_tanh)", name)
}

// hiddenActs maps Hugging Face hidden_act values (transformers'
// activations.py ACT2CLS) to the gate activation. "gelu_fast"
// (FastGELUActivation) and "gelu_accurate" (AccurateGELUActivation) compute
// the same tanh formula as "gelu_new" (gelu_fast with √(2/π) written as
// 0.7978845608, a relative difference below 1e-11), so they map to
// GEGLUTanh. "quick_gelu" (e·σ(1.702·e)) and the clipped "gelu_10" are
// different functions and are rejected, as is everything else.
var hiddenActs = []struct {
	name string
	act  Activation
}{
	{"silu", SwiGLU},
	{"swish", SwiGLU},
	{"gelu", GEGLU},
	{"gelu_python", GEGLU},
	{"gelu_pytorch_tanh", GEGLUTanh},
	{"gelu_new", GEGLUTanh},
	{"gelu_fast", GEGLUTanh},
	{"gelu_accurate", GEGLUTanh},
}

// ActivationFromHiddenAct maps a model config's hidden_act (or Gemma's
// hidden_activation) to the gate activation: "silu", "swish" → SwiGLU;
// "gelu", "gelu_python" → GEGLU (erf); "gelu_pytorch_tanh", "gelu_new",
// "gelu_fast", "gelu_accurate" → GEGLUTanh. Mapping a tanh-GELU model to the
// erf form is a known mismatch, so any other name is an error.
func ActivationFromHiddenAct(name string) (Activation, error) {
	names := ""
	for i, h := range hiddenActs {
		if name == h.name {
			return h.act, nil
		}
		if i > 0 {
			names += ", "
		}
		names += h.name
	}
	return 0, fmt.Errorf("ref: unsupported hidden_act %q for a gated MLP (accepted: %s)", name, names)
}

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

// ActGrad returns act′(e) = d act(e)/de, per lora-math.md:
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
