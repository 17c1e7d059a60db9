package hf

import (
	"fmt"

	"github.com/vklora/vklora/lora"
)

// Adapters gives the LoRA adapter of projection m of a layer, or nil for a
// projection without one (then it is the plain base matmul). It is how a
// PEFT adapter loader plugs in without this package knowing its format.
// The returned LoRALinear's Base must be left zero: Modules fills it in,
// and the base bias too unless the adapter sets Bias (a bias trained with
// PEFT's bias="all" replaces the base one).
type Adapters func(layer int, m Module) (*lora.LoRALinear, error)

// AdapterMap is an Adapters that gives every layer the adapters of m (the
// same tensors: for a one-layer model or a test).
func AdapterMap(m map[Module]*lora.LoRALinear) Adapters {
	return func(_ int, mod Module) (*lora.LoRALinear, error) { return m[mod], nil }
}

// Modules builds the layer's attention projections and gated MLP, as
// lora.ApplyLoRAQKV, ApplyLoRAO and ApplyLoRAMLP take them, from its base
// weights and the adapters ad gives (nil: none). The LoRALinears are new
// values (an adapter's is copied, never modified) that share the layer's
// device tensors: releasing the lora layers built from them frees those,
// and LayerWeights.Release after that is harmless.
func (lw *LayerWeights) Modules(ad Adapters) (*lora.Attention, *lora.GatedMLP, error) {
	if lw == nil {
		return nil, nil, fmt.Errorf("hf: Modules: layer is nil: %w", lora.ErrBadInput)
	}
	ls := make(map[Module]*lora.LoRALinear, len(Modules))
	for _, m := range Modules {
		l, err := lw.linear(m, ad)
		if err != nil {
			return nil, nil, err
		}
		ls[m] = l
	}
	attn := &lora.Attention{Q: ls[Q], K: ls[K], V: ls[V], O: ls[O]}
	mlp := &lora.GatedMLP{Gate: ls[Gate], Up: ls[Up], Down: ls[Down], HiddenAct: lw.HiddenAct}
	return attn, mlp, nil
}

func (lw *LayerWeights) linear(m Module, ad Adapters) (*lora.LoRALinear, error) {
	base := lw.Linear(m)
	if base.Weight.Dense.Released() && base.Weight.NF4.Released() {
		return nil, fmt.Errorf("hf: Modules: layer %d %s: weight is nil or released: %w", lw.Index, m, lora.ErrBadInput)
	}
	l := &lora.LoRALinear{}
	if ad != nil {
		a, err := ad(lw.Index, m)
		if err != nil {
			return nil, fmt.Errorf("hf: Modules: layer %d %s: adapter: %w", lw.Index, m, err)
		}
		if a != nil {
			if a.Base.Dense != nil || a.Base.NF4 != nil {
				return nil, fmt.Errorf("hf: Modules: layer %d %s: the adapter carries a base weight of its own; leave Base zero: %w", lw.Index, m, lora.ErrBadInput)
			}
			cp := *a
			l = &cp
		}
	}
	l.Base = base.Weight
	if l.Bias == nil {
		l.Bias = base.Bias
	}
	return l, nil
}
