package kernels

import (
	"fmt"
	"slices"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
)

// RowScale records the row step of merging a DoRA adapter into its base
// weight (shaders/rowscale.comp) on w [rows, cols] (f32, f16 or bf16), in
// place:
//
//	inverse false:  w[i,j] = v[i]·(w[i,j] + alpha·a[i,j])    c ⊙ (W + s·B·A)
//	inverse true:   w[i,j] = w[i,j]/v[i] + alpha·a[i,j]      W'/c − s·B·A
//
// a is f32 [rows, cols] and v f32 [rows]; neither may share memory with w.
// The math is f32, rounded once to w's dtype. The result is valid after
// rec.Submit; record a barrier before anything else reads w.
func (e *Dispatcher) RowScale(rec *vk.Recorder, w, a, v *vk.Tensor, alpha float32, inverse bool) error {
	if err := checkRowScale(rec, w, a, v, alpha); err != nil {
		return fmt.Errorf("kernels: RowScale: %w", err)
	}
	rows, cols := w.Dim(0), w.Dim(1)
	k, err := e.dev.ShaderKernel(shaders.RowScaleKey{D: w.DType(), Inverse: inverse}, addWG)
	if err != nil {
		return err
	}
	p := shaders.RowScalePush{Rows: uint32(rows), Cols: uint32(cols), Alpha: alpha}
	return rec.Dispatch(k, e.elementGrid(rows, cols), vk.PushBytes(&p), w.Binding(), a.Binding(), v.Binding())
}

func checkRowScale(rec *vk.Recorder, w, a, v *vk.Tensor, alpha float32) error {
	if rec == nil {
		return fmt.Errorf("recorder is nil: %w", ErrBadInput)
	}
	if err := checkOperand("w", w); err != nil {
		return err
	}
	if w.Rank() != 2 {
		return fmt.Errorf("w %s must be 2-D [rows, cols]: %w", w, ErrBadInput)
	}
	if err := checkOperand("a", a); err != nil {
		return err
	}
	if a.DType() != dtype.F32 || !slices.Equal(a.Shape(), w.Shape()) {
		return fmt.Errorf("a %s must be f32 of w's shape %v: %w", a, w.Shape(), ErrBadInput)
	}
	if err := checkVector("v", v, w.Dim(0), dtype.F32); err != nil {
		return err
	}
	for _, in := range []struct {
		name string
		t    *vk.Tensor
	}{{"a", a}, {"v", v}} {
		if vk.Overlaps(w, in.t) {
			return fmt.Errorf("w %s shares memory with %s %s: %w", w, in.name, in.t, ErrBadInput)
		}
	}
	if !finite32(alpha) {
		return fmt.Errorf("alpha %v is not finite: %w", alpha, ErrBadInput)
	}
	return nil
}
