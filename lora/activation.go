package lora

import "github.com/vklora/vklora/activation"

// Activation is the gate activation of a gated MLP. It is package
// activation's type, which package ref uses too, so the engine and the
// reference can never disagree on values or names.
type Activation = activation.Activation

// The activations of gated MLPs: SwiGLU (silu), GEGLU (erf GELU) and
// GEGLU-tanh (gelu_pytorch_tanh, Gemma).
const (
	SwiGLU    = activation.SwiGLU
	GEGLU     = activation.GEGLU
	GEGLUTanh = activation.GEGLUTanh
)

// ActivationFromHiddenAct maps a model config's hidden_act ("silu",
// "gelu", "gelu_pytorch_tanh", …) to an Activation; unknown names are
// errors. It is activation.FromHiddenAct.
func ActivationFromHiddenAct(name string) (Activation, error) {
	return activation.FromHiddenAct(name)
}
