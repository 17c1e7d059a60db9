package lora

import "github.com/vklora/vklora/ref"

// Activation is the gate activation of a gated MLP. The values and the
// model-name mapping are the reference's, so the two can never disagree.
type Activation = ref.Activation

// The activations of gated MLPs: SwiGLU (silu), GEGLU (erf GELU) and
// GEGLU-tanh (gelu_pytorch_tanh, Gemma).
const (
	SwiGLU    = ref.SwiGLU
	GEGLU     = ref.GEGLU
	GEGLUTanh = ref.GEGLUTanh
)

// ActivationFromHiddenAct maps a model config's hidden_act ("silu",
// "gelu", "gelu_pytorch_tanh", …) to an Activation; unknown names are errors.
func ActivationFromHiddenAct(name string) (Activation, error) {
	return ref.ActivationFromHiddenAct(name)
}
