package autograd

import (
	"fmt"

	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/vk"
)

// ProjVars are the trainable Vars of one projection: its lora_A and
// lora_B (both nil without adapter) and, where the projection has them,
// PEFT's extensions: lora_B's bias, DoRA's magnitude and a trainable base
// bias (nil otherwise). The Vars wrap the projection's own tensors (not
// copies) and require gradients.
type ProjVars struct {
	A, B                      *Var
	LoRABias, Magnitude, Bias *Var
}

func newProjVars(p *lora.Projection) ProjVars {
	var v ProjVars
	if p == nil {
		return v
	}
	if p.BiasTrainable && p.Bias != nil {
		v.Bias = NewVar(p.Bias, true)
	}
	if !p.HasAdapter() {
		return v
	}
	v.A, v.B = NewVar(p.A, true), NewVar(p.B, true)
	if p.LoRABias != nil {
		v.LoRABias = NewVar(p.LoRABias, true)
	}
	if p.Magnitude != nil {
		v.Magnitude = NewVar(p.Magnitude, true)
	}
	return v
}

// Grad returns the projection's gradients from tape t (owned by the tape).
func (p ProjVars) Grad(t *Tape) lora.ProjGrad {
	return lora.ProjGrad{A: t.Grad(p.A), B: t.Grad(p.B), LoRABias: t.Grad(p.LoRABias),
		Magnitude: t.Grad(p.Magnitude), Bias: t.Grad(p.Bias)}
}

// list is the projection's Vars in Params order: A and B (nil without
// adapter, as always), then each extension Var the projection has.
func (p ProjVars) list() []*Var {
	out := []*Var{p.A, p.B}
	for _, v := range []*Var{p.LoRABias, p.Magnitude, p.Bias} {
		if v != nil {
			out = append(out, v)
		}
	}
	return out
}

// ParamNames names the Vars a projection adds to a Function's Params, in
// order, with PEFT's suffixes: lora_A, lora_B, then lora_B.bias,
// lora_magnitude and bias where the projection has them.
func ParamNames(p *lora.Projection) []string {
	v := newProjVars(p)
	names := []string{"lora_A", "lora_B"}
	for i, x := range []*Var{v.LoRABias, v.Magnitude, v.Bias} {
		if x != nil {
			names = append(names, [...]string{"lora_B.bias", "lora_magnitude", "bias"}[i])
		}
	}
	return names
}

// gradsOf flattens layer gradients in the order of paramsOf: each
// projection's dA and dB, then the gradients of the extension Vars it has.
func gradsOf(vs []ProjVars, pg []lora.ProjGrad) []*vk.Tensor {
	var out []*vk.Tensor
	for i, g := range pg {
		out = append(out, g.A, g.B)
		for _, x := range []struct {
			v *Var
			t *vk.Tensor
		}{{vs[i].LoRABias, g.LoRABias}, {vs[i].Magnitude, g.Magnitude}, {vs[i].Bias, g.Bias}} {
			if x.v != nil {
				out = append(out, x.t)
			} else {
				x.t.Release() // a gradient no Var asked for (the layer changed since the Vars were made)
			}
		}
	}
	return out
}

func paramsOf(ps ...ProjVars) []*Var {
	var out []*Var
	for _, p := range ps {
		out = append(out, p.list()...)
	}
	return out
}

func arity(op string, got []*vk.Tensor, want int) error {
	if len(got) != want {
		return fmt.Errorf("autograd: %s: %d tensors, want %d: %w", op, len(got), want, ErrBadInput)
	}
	return nil
}

// O is lora.O as a Function: input X [M, in], output Y [M, out].
type O struct {
	Layer *lora.O
	Proj  ProjVars
}

// NewO wraps layer; its adapter's Vars are made once, so every application
// of the result adds to the same parameter gradients.
func NewO(layer *lora.O) *O {
	o := &O{Layer: layer}
	if layer != nil {
		o.Proj = newProjVars(layer.Proj)
	}
	return o
}

// Params are A and B of the projection.
func (f *O) Params() []*Var { return paramsOf(f.Proj) }

// Forward implements Function.
func (f *O) Forward(rec *vk.Recorder, in []*vk.Tensor) ([]*vk.Tensor, Context, error) {
	if err := arity("O.Forward inputs", in, 1); err != nil {
		return nil, nil, err
	}
	y, saved, err := f.Layer.Forward(rec, in[0])
	if err != nil {
		return nil, nil, err
	}
	return []*vk.Tensor{y}, &oCtx{f.Layer, saved, []ProjVars{f.Proj}}, nil
}

type oCtx struct {
	layer *lora.O
	saved *lora.OSaved
	vars  []ProjVars // the Function's Vars, for the order of its gradients
}

func (c *oCtx) Backward(rec *vk.Recorder, g []*vk.Tensor) ([]*vk.Tensor, []*vk.Tensor, error) {
	if err := arity("O.Backward gradients", g, 1); err != nil {
		return nil, nil, err
	}
	dx, pg, err := c.layer.Backward(rec, c.saved, g[0])
	if err != nil {
		return nil, nil, err
	}
	return []*vk.Tensor{dx}, gradsOf(c.vars, []lora.ProjGrad{pg}), nil
}

func (c *oCtx) Release() { c.saved.Release() }

// QKV is lora.QKV as a Function: input X [M, in], outputs Q, K, V.
type QKV struct {
	Layer   *lora.QKV
	Q, K, V ProjVars
}

// NewQKV wraps layer (see NewO).
func NewQKV(layer *lora.QKV) *QKV {
	f := &QKV{Layer: layer}
	if layer != nil {
		f.Q, f.K, f.V = newProjVars(layer.Q), newProjVars(layer.K), newProjVars(layer.V)
	}
	return f
}

// Params are A and B of q, k and v.
func (f *QKV) Params() []*Var { return paramsOf(f.Q, f.K, f.V) }

// Forward implements Function.
func (f *QKV) Forward(rec *vk.Recorder, in []*vk.Tensor) ([]*vk.Tensor, Context, error) {
	if err := arity("QKV.Forward inputs", in, 1); err != nil {
		return nil, nil, err
	}
	q, k, v, saved, err := f.Layer.Forward(rec, in[0])
	if err != nil {
		return nil, nil, err
	}
	return []*vk.Tensor{q, k, v}, &qkvCtx{f.Layer, saved, []ProjVars{f.Q, f.K, f.V}}, nil
}

type qkvCtx struct {
	layer *lora.QKV
	saved *lora.QKVSaved
	vars  []ProjVars // the Function's Vars, for the order of its gradients
}

func (c *qkvCtx) Backward(rec *vk.Recorder, g []*vk.Tensor) ([]*vk.Tensor, []*vk.Tensor, error) {
	if err := arity("QKV.Backward gradients", g, 3); err != nil {
		return nil, nil, err
	}
	dx, pg, err := c.layer.Backward(rec, c.saved, g[0], g[1], g[2])
	if err != nil {
		return nil, nil, err
	}
	return []*vk.Tensor{dx}, gradsOf(c.vars, pg[:]), nil
}

func (c *qkvCtx) Release() { c.saved.Release() }

// MLP is lora.MLP as a Function: input X [M, H], output Y [M, H]. Unless
// Layer.KeepSaved is set, the backward runs in place and consumes the saved
// context; the tape runs each backward once, so that default fits it.
type MLP struct {
	Layer          *lora.MLP
	Gate, Up, Down ProjVars
}

// NewMLP wraps layer (see NewO).
func NewMLP(layer *lora.MLP) *MLP {
	f := &MLP{Layer: layer}
	if layer != nil {
		f.Gate, f.Up, f.Down = newProjVars(layer.Gate), newProjVars(layer.Up), newProjVars(layer.Down)
	}
	return f
}

// Params are A and B of gate, up and down.
func (f *MLP) Params() []*Var { return paramsOf(f.Gate, f.Up, f.Down) }

// Forward implements Function.
func (f *MLP) Forward(rec *vk.Recorder, in []*vk.Tensor) ([]*vk.Tensor, Context, error) {
	if err := arity("MLP.Forward inputs", in, 1); err != nil {
		return nil, nil, err
	}
	y, saved, err := f.Layer.Forward(rec, in[0])
	if err != nil {
		return nil, nil, err
	}
	return []*vk.Tensor{y}, &mlpCtx{f.Layer, saved, []ProjVars{f.Gate, f.Up, f.Down}}, nil
}

type mlpCtx struct {
	layer *lora.MLP
	saved *lora.MLPSaved
	vars  []ProjVars // the Function's Vars, for the order of its gradients
}

func (c *mlpCtx) Backward(rec *vk.Recorder, g []*vk.Tensor) ([]*vk.Tensor, []*vk.Tensor, error) {
	if err := arity("MLP.Backward gradients", g, 1); err != nil {
		return nil, nil, err
	}
	dx, pg, err := c.layer.Backward(rec, c.saved, g[0])
	if err != nil {
		return nil, nil, err
	}
	return []*vk.Tensor{dx}, gradsOf(c.vars, pg[:]), nil
}

func (c *mlpCtx) Release() { c.saved.Release() }
