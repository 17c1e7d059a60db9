package finetune

import (
	"fmt"
	"maps"
	"slices"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/hf"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/optim"
	"github.com/vklora/vklora/peft"
	"github.com/vklora/vklora/vk"
)

// LayerGrads are one layer's adapter gradients as its layers' Backward
// return them: q, k, v from QKV.Backward, O's, and gate, up, down from
// MLP.Backward.
type LayerGrads struct {
	QKV [3]lora.ProjGrad
	O   lora.ProjGrad
	MLP [3]lora.ProjGrad
}

func (g *LayerGrads) list() []lora.ProjGrad {
	return []lora.ProjGrad{g.QKV[0], g.QKV[1], g.QKV[2], g.O, g.MLP[0], g.MLP[1], g.MLP[2]}
}

// Release frees every gradient; safe to call twice.
func (g *LayerGrads) Release() {
	for i := range g.QKV {
		g.QKV[i].Release()
		g.MLP[i].Release()
	}
	g.O.Release()
}

// trainable is one trainable tensor of a projection with its PEFT name
// suffix and the gradient that belongs to it.
type trainable struct {
	suffix string
	t      *vk.Tensor
	grad   func(*lora.ProjGrad) *vk.Tensor
}

// trainables lists a projection's trainable tensors in Params order:
// lora_A, lora_B, then lora_B's bias and DoRA's magnitude where present,
// then the base bias where it is trained ("base_layer.bias" of an adapted
// projection, "bias" of one without adapter, as PEFT names them).
func trainables(p *lora.Projection) []trainable {
	if p == nil {
		return nil
	}
	bias := trainable{"base_layer.bias", p.Bias, func(g *lora.ProjGrad) *vk.Tensor { return g.Bias }}
	if !p.HasAdapter() {
		if !p.BiasTrainable {
			return nil
		}
		bias.suffix = "bias"
		return []trainable{bias}
	}
	out := []trainable{
		{"lora_A.weight", p.A, func(g *lora.ProjGrad) *vk.Tensor { return g.A }},
		{"lora_B.weight", p.B, func(g *lora.ProjGrad) *vk.Tensor { return g.B }},
	}
	if p.LoRABias != nil {
		out = append(out, trainable{"lora_B.bias", p.LoRABias, func(g *lora.ProjGrad) *vk.Tensor { return g.LoRABias }})
	}
	if p.Magnitude != nil {
		out = append(out, trainable{"lora_magnitude_vector", p.Magnitude, func(g *lora.ProjGrad) *vk.Tensor { return g.Magnitude }})
	}
	if p.BiasTrainable {
		out = append(out, bias)
	}
	return out
}

// Params lists the adapter's trainable tensors for optim.NewAdamW, layer by
// layer in Layers order, each layer's projections in hf.Modules order (q, k,
// v, o, gate, up, down), each projection's lora_A, lora_B, then its lora_B
// bias and DoRA magnitude where it has them, then its base bias where the
// config trains it (bias "lora_only": the adapted projections'; "all":
// every projection's, adapter or not). Names are the tensors' keys in
// adapter_model.safetensors without "base_model.model.", e.g.
// "model.layers.0.self_attn.q_proj.lora_A.weight",
// "model.layers.0.self_attn.q_proj.base_layer.bias" and, for a projection
// without adapter, "model.layers.0.self_attn.k_proj.bias".
func (m *Model) Params() []optim.Param {
	if m == nil {
		return nil
	}
	var ps []optim.Param
	for _, l := range m.Layers {
		for k, p := range l.Projections() {
			for _, tr := range trainables(p) {
				ps = append(ps, optim.Param{Name: hf.Prefix(l.Index, hf.Modules[k]) + "." + tr.suffix, Tensor: tr.t})
			}
		}
	}
	return ps
}

// Grads flattens the layers' gradients (g[i] for Layers[i]) in Params
// order, for optim.AdamW.Step. A gradient missing for a trainable tensor is
// an error naming it. The tensors stay g's: release them after the step.
func (m *Model) Grads(g []LayerGrads) ([]*vk.Tensor, error) {
	if m == nil || m.Modules == nil {
		return nil, fmt.Errorf("finetune: Grads: %w: %w", errNoLayers, lora.ErrBadInput)
	}
	if len(g) != len(m.Layers) {
		return nil, fmt.Errorf("finetune: Grads: %d layer gradients for %d layers: %w", len(g), len(m.Layers), lora.ErrBadInput)
	}
	var out []*vk.Tensor
	for i, l := range m.Layers {
		pgs := g[i].list()
		for k, p := range l.Projections() {
			for _, tr := range trainables(p) {
				t := tr.grad(&pgs[k])
				if t == nil {
					return nil, fmt.Errorf("finetune: Grads: no gradient for %s.%s: %w", hf.Prefix(l.Index, hf.Modules[k]), tr.suffix, lora.ErrBadInput)
				}
				out = append(out, t)
			}
		}
	}
	return out, nil
}

// Trained downloads the adapter's current (trained) tensors into a copy of
// Adapter, each in its stored dtype, ready for peft.Save: the modules, with
// their trained base biases, and OtherBiases; modules and biases of layers
// that were not loaded keep their starting values.
func (m *Model) Trained() (*peft.Adapter, error) {
	if m == nil || m.Modules == nil {
		return nil, fmt.Errorf("finetune: Trained: %w: %w", errNoLayers, lora.ErrBadInput)
	}
	a, err := m.Modules.Download(m.Adapter)
	if err != nil {
		return nil, fmt.Errorf("finetune: Trained: %w", err)
	}
	for _, p := range slices.Sorted(maps.Keys(m.OtherBiases)) {
		h := m.Adapter.OtherBiases[p]
		data, err := m.OtherBiases[p].Float32()
		if err != nil {
			return nil, fmt.Errorf("finetune: Trained: %s.bias: %w", p, err)
		}
		dtype.RoundSlice(h.DType, data)
		a.OtherBiases[p] = &peft.Tensor{Shape: slices.Clone(h.Shape), DType: h.DType, Data: data}
	}
	return a, nil
}

// Save writes the trained adapter to dir as PEFT's save_pretrained does
// (peft.Save), so that PeftModel.from_pretrained loads it.
func (m *Model) Save(dir string) error {
	a, err := m.Trained()
	if err != nil {
		return err
	}
	if err := peft.Save(dir, a); err != nil {
		return fmt.Errorf("finetune: Save: %w", err)
	}
	return nil
}
