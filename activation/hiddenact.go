package activation

import (
	"fmt"
	"strings"
)

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

// FromHiddenAct maps a model config's hidden_act (or Gemma's
// hidden_activation) to the gate activation: "silu", "swish" → SwiGLU;
// "gelu", "gelu_python" → GEGLU (erf); "gelu_pytorch_tanh", "gelu_new",
// "gelu_fast", "gelu_accurate" → GEGLUTanh. Running a tanh-GELU model with
// the erf form is a known, silent mismatch, so any other name is an error
// rather than a guess; names are case-sensitive, as in transformers.
func FromHiddenAct(name string) (Activation, error) {
	names := make([]string, 0, len(hiddenActs))
	for _, h := range hiddenActs {
		if name == h.name {
			return h.act, nil
		}
		names = append(names, h.name)
	}
	return 0, fmt.Errorf("activation: unsupported hidden_act %q for a gated MLP (accepted: %s)", name, strings.Join(names, ", "))
}
