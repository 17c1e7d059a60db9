// Package activation names the gate activation of a gated MLP
// (h = act(e) ⊙ g) and maps model configurations onto it. It is a leaf
// package, imported by the engine (package lora), the float64 reference
// (package ref) and the conformance loader, so that all three agree on the
// values, the names and the Hugging Face mapping, and so that an error about
// a model's hidden_act names this package rather than the reference.
//
// The math of the activations lives elsewhere: float64 in ref.Act and
// ref.ActGrad, fp32 in shaders/include/activation.glsl; docs/LORA-MATH.md
// gives the formulas.
//
// # Names
//
// String gives the names used by the conformance vectors ("swiglu", "geglu",
// "geglu_tanh") and Parse is its inverse. FromHiddenAct maps the
// hidden_act of a transformers model config ("silu", "gelu",
// "gelu_pytorch_tanh", ...), which is a different vocabulary: "gelu" there
// is the erf GELU, "geglu" here names the gated MLP built on it.
//
// # Errors
//
// Parse and FromHiddenAct return errors naming the rejected name and the
// accepted ones; the zero Activation is invalid (Valid reports false), so a
// forgotten setting is caught instead of silently becoming SwiGLU.
package activation
