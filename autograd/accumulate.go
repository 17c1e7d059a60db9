package autograd

import (
	"fmt"
	"slices"

	"github.com/vklora/vklora/vk"
)

// accumulate adds g to v's gradient. g is new and the tape's from now on:
// the first contribution simply becomes the gradient (no copy, no kernel),
// later ones are added into it elementwise (lora's add kernel: the sum in
// fp32, one rounding to the dtype, so a gradient of two contributions is
// the correctly rounded sum of what the layers stored).
func (t *Tape) accumulate(rec *vk.Recorder, v *Var, g *vk.Tensor) error {
	acc := t.grads[v]
	if acc == nil {
		t.grads[v] = g
		return nil
	}
	// g is read by the recorded add; free it when the work is done.
	rec.Hold(g)
	if g.DType() != acc.DType() || !slices.Equal(g.Shape(), acc.Shape()) {
		return fmt.Errorf("autograd: gradient contributions %s and %s of one Var must have one shape and dtype: %w", acc, g, ErrBadInput)
	}
	if err := t.eng.AddTo(rec, acc, g, 1); err != nil {
		return fmt.Errorf("autograd: accumulate gradient %s: %w", acc, err)
	}
	// A later contribution to acc, or the backward reading it, must see this one.
	rec.Barrier()
	return nil
}

// zeros records a zero tensor shaped like like, the gradient of an output
// nothing used. It is freed after the submit.
func (t *Tape) zeros(rec *vk.Recorder, like *vk.Tensor) (*vk.Tensor, error) {
	z, err := t.eng.Device().NewTensor(like.DType(), like.Shape()...)
	if err != nil {
		return nil, fmt.Errorf("autograd: zero gradient for %s: %w", like, err)
	}
	rec.Hold(z)
	// Fill writes whole 32-bit words; Binding covers the elements rounded up
	// to 4 bytes, inside the buffer's padding. Zero bits are 0.0 in every dtype.
	if err := rec.Fill(z.Binding(), 0); err != nil {
		return nil, err
	}
	return z, nil
}
