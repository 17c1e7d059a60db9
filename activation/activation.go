package activation

import (
	"fmt"
	"strings"
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

// All lists the valid activations in the order of their values.
func All() []Activation { return []Activation{SwiGLU, GEGLU, GEGLUTanh} }

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

// Parse turns a conformance-vector name ("swiglu", "geglu", "geglu_tanh";
// the inverse of String) into an Activation.
func Parse(name string) (Activation, error) {
	names := make([]string, 0, 3)
	for _, a := range All() {
		if name == a.String() {
			return a, nil
		}
		names = append(names, a.String())
	}
	return 0, fmt.Errorf("activation: unknown activation %q (accepted: %s)", name, strings.Join(names, ", "))
}
