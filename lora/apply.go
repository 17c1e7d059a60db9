package lora

import "fmt"

// Attention mirrors the LoRA-wrapped projections of a PEFT attention module
// (q_proj, k_proj, v_proj, o_proj).
type Attention struct {
	Q, K, V, O *LoRALinear
}

// GatedMLP mirrors a PEFT-wrapped gated MLP (gate_proj, up_proj, down_proj)
// and the model config's hidden_act, which picks the activation.
type GatedMLP struct {
	Gate, Up, Down *LoRALinear
	HiddenAct      string
}

// ApplyLoRAMLP builds the fused MLP for mlp with the activation its
// HiddenAct names (SwiGLU, GEGLU or GEGLU-tanh); an unknown name is an error.
func ApplyLoRAMLP(eng *Engine, mlp *GatedMLP) (*MLP, error) {
	return applyMLP("ApplyLoRAMLP", eng, mlp, 0)
}

// ApplyLoRAMLPSwiGLU is ApplyLoRAMLP for a model whose HiddenAct must be a
// SiLU ("silu", "swish"): anything else is an error, never a silent swap.
func ApplyLoRAMLPSwiGLU(eng *Engine, mlp *GatedMLP) (*MLP, error) {
	return applyMLP("ApplyLoRAMLPSwiGLU", eng, mlp, SwiGLU)
}

// ApplyLoRAMLPGEGLU is ApplyLoRAMLP for a GELU model: "gelu" gives the erf
// form (GEGLU), "gelu_pytorch_tanh", "gelu_new", … the tanh form
// (GEGLUTanh). Mapping a tanh model to erf is a known anchor bug, hence no
// default.
func ApplyLoRAMLPGEGLU(eng *Engine, mlp *GatedMLP) (*MLP, error) {
	return applyMLP("ApplyLoRAMLPGEGLU", eng, mlp, GEGLU)
}

// applyMLP resolves the activation (want 0: any; SwiGLU; GEGLU: either GELU)
// and the three projections, and validates them together.
func applyMLP(fn string, eng *Engine, mlp *GatedMLP, want Activation) (*MLP, error) {
	if eng == nil || mlp == nil {
		return nil, fmt.Errorf("lora: %s: engine or mlp is nil: %w", fn, ErrBadInput)
	}
	act, err := ActivationFromHiddenAct(mlp.HiddenAct)
	if err != nil {
		return nil, fmt.Errorf("lora: %s: %v: %w", fn, err, ErrBadInput)
	}
	gelu := act == GEGLU || act == GEGLUTanh
	if (want == SwiGLU && act != SwiGLU) || (want == GEGLU && !gelu) {
		kind := map[Activation]string{SwiGLU: "SiLU", GEGLU: "GELU"}[want]
		return nil, fmt.Errorf("lora: %s: hidden_act %q gives %s, not a %s model: %w", fn, mlp.HiddenAct, act, kind, ErrBadInput)
	}
	ps, err := projections(fn, []string{"gate_proj", "up_proj", "down_proj"}, mlp.Gate, mlp.Up, mlp.Down)
	if err != nil {
		return nil, err
	}
	l := &MLP{Engine: eng, Gate: ps[0], Up: ps[1], Down: ps[2], Act: act}
	if _, err := l.check("Apply"); err != nil {
		return nil, err
	}
	return l, nil
}

// ApplyLoRAQKV builds the fused q, k, v projections of attn.
func ApplyLoRAQKV(eng *Engine, attn *Attention) (*QKV, error) {
	if eng == nil || attn == nil {
		return nil, fmt.Errorf("lora: ApplyLoRAQKV: engine or attention is nil: %w", ErrBadInput)
	}
	ps, err := projections("ApplyLoRAQKV", []string{"q_proj", "k_proj", "v_proj"}, attn.Q, attn.K, attn.V)
	if err != nil {
		return nil, err
	}
	l := &QKV{Engine: eng, Q: ps[0], K: ps[1], V: ps[2]}
	if _, err := l.check("Apply"); err != nil {
		return nil, err
	}
	return l, nil
}

// ApplyLoRAO builds the output projection of attn.
func ApplyLoRAO(eng *Engine, attn *Attention) (*O, error) {
	if eng == nil || attn == nil {
		return nil, fmt.Errorf("lora: ApplyLoRAO: engine or attention is nil: %w", ErrBadInput)
	}
	ps, err := projections("ApplyLoRAO", []string{"o_proj"}, attn.O)
	if err != nil {
		return nil, err
	}
	if _, _, _, _, err := ps[0].shape("o_proj"); err != nil {
		return nil, fmt.Errorf("lora: ApplyLoRAO: %w", err)
	}
	return &O{Engine: eng, Proj: ps[0]}, nil
}

func projections(fn string, names []string, ls ...*LoRALinear) ([]*Projection, error) {
	ps := make([]*Projection, len(ls))
	for i, l := range ls {
		p, err := getLoRAParameters(l)
		if err != nil {
			return nil, fmt.Errorf("lora: %s: %s: %w", fn, names[i], err)
		}
		ps[i] = p
	}
	return ps, nil
}
