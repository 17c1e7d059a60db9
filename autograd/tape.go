package autograd

import (
	"errors"
	"fmt"
	"slices"

	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/vk"
)

// ErrBadInput marks errors caused by the caller's arguments; it is lora's
// sentinel, so one errors.Is check covers both packages.
var ErrBadInput = lora.ErrBadInput

// Var is a tensor on a tape. Leaves (inputs, adapter parameters) wrap a
// caller's tensor; outputs of Apply wrap tensors the tape owns. Frozen
// tensors (base weights and biases, NF4 states) are never Vars: they get no
// gradient.
type Var struct {
	Value        *vk.Tensor
	RequiresGrad bool
}

// NewVar wraps a caller-owned tensor as a leaf.
func NewVar(t *vk.Tensor, requiresGrad bool) *Var { return &Var{Value: t, RequiresGrad: requiresGrad} }

// Function is a differentiable op. It is stateless across applications:
// everything one application's backward needs lives in the Context its
// Forward returns, so one layer can be applied several times on a tape.
type Function interface {
	// Forward records the op on the input values and returns new output
	// tensors (handed to the tape) and the context for the backward.
	Forward(rec *vk.Recorder, inputs []*vk.Tensor) (outputs []*vk.Tensor, ctx Context, err error)
	// Params are the trainable parameters the op reads besides its inputs
	// (nil entries are allowed: a projection without adapter). Several
	// applications of one Function share them, so their gradients add up.
	Params() []*Var
}

// Context is one application's saved state.
type Context interface {
	// Backward records the gradients of the inputs and of Params (same
	// order; nil where there is none) for one gradient per output. Every
	// returned tensor must be newly allocated: the tape takes ownership and
	// may accumulate into it.
	Backward(rec *vk.Recorder, gradOutputs []*vk.Tensor) (gradInputs, gradParams []*vk.Tensor, err error)
	// Release frees the saved state; safe to call twice.
	Release()
}

type node struct {
	ctx     Context
	inputs  []*Var
	params  []*Var
	outputs []*Var
}

// Tape records applications in order (which is a topological order, since
// an input must exist before it is used) and replays them in reverse.
// A tape is for one forward and one backward; make a new one per step.
type Tape struct {
	eng      *lora.Engine
	nodes    []*node
	owned    []*vk.Tensor // outputs of Apply, released by Release
	grads    map[*Var]*vk.Tensor
	backward bool
}

// NewTape makes an empty tape recording on eng's device.
func NewTape(eng *lora.Engine) *Tape {
	return &Tape{eng: eng, grads: map[*Var]*vk.Tensor{}}
}

// Apply records fn on inputs and returns its outputs as Vars owned by the
// tape (valid after rec.Submit, until Release). An output requires a
// gradient when any input or parameter does.
func (t *Tape) Apply(rec *vk.Recorder, fn Function, inputs ...*Var) ([]*Var, error) {
	if t == nil || t.eng == nil || rec == nil || fn == nil {
		return nil, fmt.Errorf("autograd: Apply: tape, engine, recorder or function is nil: %w", ErrBadInput)
	}
	if t.backward {
		return nil, fmt.Errorf("autograd: Apply: the tape already ran its backward: %w", ErrBadInput)
	}
	vals := make([]*vk.Tensor, len(inputs))
	needs := false
	for i, v := range inputs {
		if v == nil {
			return nil, fmt.Errorf("autograd: Apply: input %d is nil: %w", i, ErrBadInput)
		}
		vals[i], needs = v.Value, needs || v.RequiresGrad
	}
	params := fn.Params()
	for _, p := range params {
		needs = needs || (p != nil && p.RequiresGrad)
	}
	outs, ctx, err := fn.Forward(rec, vals)
	if err != nil {
		return nil, err
	}
	// The next application (or the caller) reads these outputs.
	rec.Barrier()
	n := &node{ctx: ctx, inputs: slices.Clone(inputs), params: params}
	for _, o := range outs {
		t.owned = append(t.owned, o)
		n.outputs = append(n.outputs, &Var{Value: o, RequiresGrad: needs})
	}
	t.nodes = append(t.nodes, n)
	return n.outputs, nil
}

// Seed is one root of the backward pass: dL/dVar = Grad (caller-owned,
// the shape and dtype of Var.Value).
type Seed struct {
	Var  *Var
	Grad *vk.Tensor
}

// Backward records the gradients of a loss whose gradients with respect to
// the seeds' Vars are given. Several seeds mean a loss that sums several
// terms; a seeded Var that also feeds later ops gets the sum. Outputs of an
// application that received no gradient count as zero. Run once per tape.
func (t *Tape) Backward(rec *vk.Recorder, seeds ...Seed) error {
	if t == nil || t.eng == nil || rec == nil {
		return fmt.Errorf("autograd: Backward: tape, engine or recorder is nil: %w", ErrBadInput)
	}
	if t.backward {
		return fmt.Errorf("autograd: Backward: the tape already ran its backward: %w", ErrBadInput)
	}
	for i, s := range seeds {
		if err := checkSeed(i, s); err != nil {
			return err
		}
	}
	t.backward = true
	// Seeds are copied so that accumulation never writes a caller's tensor.
	for i, s := range seeds {
		if !s.Var.RequiresGrad {
			continue
		}
		c, err := t.eng.Device().NewTensor(s.Grad.DType(), s.Grad.Shape()...)
		if err != nil {
			return fmt.Errorf("autograd: Backward: seed %d: %w", i, err)
		}
		if err := rec.Copy(c.Binding(), s.Grad.Binding()); err != nil {
			c.Release()
			return err
		}
		if err := t.accumulate(rec, s.Var, c); err != nil {
			return err
		}
	}
	rec.Barrier()
	for i := len(t.nodes) - 1; i >= 0; i-- {
		if err := t.backwardNode(rec, t.nodes[i]); err != nil {
			return err
		}
	}
	return nil
}

func checkSeed(i int, s Seed) error {
	if s.Var == nil || s.Var.Value == nil || s.Grad == nil || s.Grad.Released() {
		return fmt.Errorf("autograd: Backward: seed %d: Var or gradient is nil or released: %w", i, ErrBadInput)
	}
	if v, g := s.Var.Value, s.Grad; g.DType() != v.DType() || !slices.Equal(g.Shape(), v.Shape()) {
		return fmt.Errorf("autograd: Backward: seed %d: gradient %s must match its Var %s: %w", i, g, v, ErrBadInput)
	}
	return nil
}

// backwardNode runs one application's backward if any output has a gradient
// and anything upstream wants one.
func (t *Tape) backwardNode(rec *vk.Recorder, n *node) error {
	if len(n.outputs) == 0 || !n.outputs[0].RequiresGrad {
		return nil
	}
	gos := make([]*vk.Tensor, len(n.outputs))
	some := false
	for i, o := range n.outputs {
		gos[i] = t.grads[o]
		some = some || gos[i] != nil
	}
	if !some {
		return nil
	}
	zeros := false
	for i, o := range n.outputs {
		if gos[i] == nil {
			z, err := t.zeros(rec, o.Value)
			if err != nil {
				return err
			}
			gos[i], zeros = z, true
		}
	}
	if zeros {
		rec.Barrier()
	}
	gin, gpar, err := n.ctx.Backward(rec, gos)
	if err != nil {
		return err
	}
	rec.Barrier()
	if len(gin) != len(n.inputs) || len(gpar) != len(n.params) {
		for _, g := range append(gin, gpar...) {
			rec.Hold(g)
		}
		return fmt.Errorf("autograd: Backward: a context returned %d input and %d parameter gradients for %d inputs and %d parameters: %w",
			len(gin), len(gpar), len(n.inputs), len(n.params), ErrBadInput)
	}
	var errs []error
	for i, g := range gin {
		errs = append(errs, t.contribute(rec, n.inputs[i], g))
	}
	for i, g := range gpar {
		errs = append(errs, t.contribute(rec, n.params[i], g))
	}
	return errors.Join(errs...)
}

// contribute hands g (new, now the tape's) to v's gradient, or drops it
// (after the recorded work) when v wants none.
func (t *Tape) contribute(rec *vk.Recorder, v *Var, g *vk.Tensor) error {
	if g == nil {
		return nil
	}
	if v == nil || !v.RequiresGrad {
		rec.Hold(g)
		return nil
	}
	return t.accumulate(rec, v, g)
}

// Grad is dL/dv after the backward has been submitted: nil when v received
// none (or requires none). The tape owns it; it is valid until Release.
func (t *Tape) Grad(v *Var) *vk.Tensor { return t.grads[v] }

// Release frees every output, gradient and saved context of the tape (call
// it after the submit that ran them); safe to call twice.
func (t *Tape) Release() {
	if t == nil {
		return
	}
	for _, n := range t.nodes {
		if n.ctx != nil {
			n.ctx.Release()
		}
	}
	for _, o := range t.owned {
		o.Release()
	}
	for _, g := range t.grads {
		g.Release()
	}
	t.nodes, t.owned = nil, nil
	t.grads = map[*Var]*vk.Tensor{}
}
