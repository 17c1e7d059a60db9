package autograd

import (
	"fmt"
	"slices"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/vk"
)

// accumulate adds g to v's gradient. g is new and the tape's from now on:
// the first contribution simply becomes the gradient (no copy, no kernel),
// later ones are added into it.
//
// There is no elementwise add kernel yet, so the sum is a matmul with an
// identity: acc = 1·I·g + 1·acc with I of the smaller side (or g·I). It is
// exact (one product per element is non-zero, fp32 accumulation, one
// rounding to the dtype) but costs M·N·min(M,N) FLOPs and a min(M,N)² f32
// identity per size: a stopgap for the gradients of Vars with several uses,
// to be replaced by an add kernel. One known difference from an add: an
// infinite element also turns the zero products of its column into NaN.
func (t *Tape) accumulate(rec *vk.Recorder, v *Var, g *vk.Tensor) error {
	acc := t.grads[v]
	if acc == nil {
		t.grads[v] = g
		return nil
	}
	// g is read by the recorded add; free it when the work is done.
	rec.Hold(g)
	if g.DType() != acc.DType() || !slices.Equal(g.Shape(), acc.Shape()) || g.Rank() != 2 {
		return fmt.Errorf("autograd: gradient contributions %s and %s of one Var must be equal 2-D shapes: %w", acc, g, ErrBadInput)
	}
	m, n := g.Dim(0), g.Dim(1)
	eye, err := t.identity(min(m, n))
	if err != nil {
		return err
	}
	if m <= n {
		err = t.eng.MatmulTo(rec, acc, lora.Dense(eye), lora.Dense(g), 1, 1)
	} else {
		err = t.eng.MatmulTo(rec, acc, lora.Dense(g), lora.Dense(eye), 1, 1)
	}
	if err != nil {
		return fmt.Errorf("autograd: accumulate gradient %s: %w", acc, err)
	}
	// A later contribution to acc, or the backward reading it, must see this one.
	rec.Barrier()
	return nil
}

// identity returns the cached f32 identity [n, n].
func (t *Tape) identity(n int) (*vk.Tensor, error) {
	if e := t.eye[n]; e != nil {
		return e, nil
	}
	data := make([]float32, n*n)
	for i := 0; i < n; i++ {
		data[i*n+i] = 1
	}
	e, err := t.eng.Device().TensorFrom(dtype.F32, data, n, n)
	if err != nil {
		return nil, fmt.Errorf("autograd: identity [%d %d] for gradient accumulation: %w", n, n, err)
	}
	t.eye[n] = e
	return e, nil
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
