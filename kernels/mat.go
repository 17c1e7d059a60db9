package kernels

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/vk"
)

// Mat is a 2-D matmul operand: a dense tensor or an NF4 weight, optionally
// transposed. Transposition is a view (strides), never a copy.
type Mat struct {
	t     *vk.Tensor
	nf4   *quant.DeviceNF4
	trans bool
}

// Dense wraps a 2-D tensor as an operand.
func Dense(t *vk.Tensor) Mat { return Mat{t: t} }

// NF4 wraps a 4-bit weight [out, in] as an operand; it may only be the B
// operand of a matmul.
func NF4(w *quant.DeviceNF4) Mat { return Mat{nf4: w} }

// T returns the transposed operand.
func (m Mat) T() Mat { m.trans = !m.trans; return m }

// IsZero reports an absent operand.
func (m Mat) IsZero() bool { return m.t == nil && m.nf4 == nil }

// stored returns the rows and columns as stored.
func (m Mat) stored() (int, int) {
	if m.nf4 != nil {
		return m.nf4.Out, m.nf4.In
	}
	return m.t.Dim(0), m.t.Dim(1)
}

// Dims returns the rows and columns of the operand as used (after
// transposition).
func (m Mat) Dims() (int, int) {
	r, c := m.stored()
	if m.trans {
		return c, r
	}
	return r, c
}

// strides returns the element strides of op(M)[i,j] = m[i·rs + j·cs].
func (m Mat) strides() (rs, cs uint32) {
	_, c := m.stored()
	if m.trans {
		return 1, uint32(c)
	}
	return uint32(c), 1
}

// DType is the operand's dtype: the tensor's, or an NF4 weight's dense
// dtype.
func (m Mat) DType() dtype.DType {
	if m.nf4 != nil {
		return m.nf4.DType
	}
	return m.t.DType()
}

func (m Mat) String() string {
	var s string
	switch {
	case m.nf4 != nil:
		s = m.nf4.String()
	case m.t != nil:
		s = m.t.String()
	default:
		return "<none>"
	}
	if m.trans {
		s += "ᵀ"
	}
	return s
}

// check reports a nil, released or non-2-D operand, naming it.
func (m Mat) check(name string) error {
	switch {
	case m.nf4 != nil:
		if m.nf4.Released() {
			return fmt.Errorf("%s %s is released: %w", name, m, ErrBadInput)
		}
		if err := m.nf4.Check(); err != nil {
			return fmt.Errorf("%s: %v: %w", name, err, ErrBadInput)
		}
	case m.t == nil:
		return fmt.Errorf("%s is nil: %w", name, ErrBadInput)
	case m.t.Released():
		return fmt.Errorf("%s %s is released: %w", name, m, ErrBadInput)
	case m.t.Rank() != 2:
		return fmt.Errorf("%s %s must be 2-D: %w", name, m, ErrBadInput)
	case !m.t.DType().IsFloat():
		return fmt.Errorf("%s %s must be f32, f16 or bf16: %w", name, m, ErrBadInput)
	}
	return nil
}

func (m Mat) bindings() (main vk.Binding, state vk.Binding, ok bool) {
	if m.nf4 != nil {
		return m.nf4.Packed.Binding(), m.nf4.State.Binding(), true
	}
	return m.t.Binding(), vk.Binding{}, false
}

// overlaps reports whether the operand reads memory that t occupies.
func (m Mat) overlaps(t *vk.Tensor) bool {
	if m.nf4 != nil {
		return vk.Overlaps(m.nf4.Packed, t) || vk.Overlaps(m.nf4.State, t)
	}
	return vk.Overlaps(m.t, t)
}
