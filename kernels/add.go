package kernels

import (
	"fmt"
	"slices"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
)

const addWG = 256

// addGrid bounds the workgroup grid (x, y) of the add kernels. The shader
// loops over what the grid does not cover, so it only has to fill the GPU:
// 1024·256 invocations per row pass, 4096 row groups. A variable so that
// tests can shrink it and run the loops on small tensors.
var addGrid = [2]int{1024, 4096}

// maxAddElems keeps every index of add.comp (rows·cols, and a column index
// plus its stride) inside 32 bits. A storage-buffer binding is at most 4 GiB
// on current devices, so no bindable f16/bf16/f32 tensor is larger.
const maxAddElems = 1 << 31

// AddTo records dst = dst + alpha·src elementwise: fp32 math (the product
// and the sum each rounded once, never fused), then one round to nearest
// even to the storage dtype. dst and src have one shape and one dtype (f32,
// f16 or bf16); src may be dst. With alpha = 1 this is an exact-as-fp32
// gradient accumulation. The result is valid after rec.Submit; record a
// barrier before anything else reads dst.
func (e *Dispatcher) AddTo(rec *vk.Recorder, dst, src *vk.Tensor, alpha float32) error {
	if err := checkAdd(rec, dst, src, alpha); err != nil {
		return fmt.Errorf("kernels: AddTo: %w", err)
	}
	return e.dispatchAdd(rec, shaders.AddKey{D: dst.DType()}, 1, dst.Numel(), alpha, dst, src)
}

// AddBiasTo records y[m, n] = y[m, n] + bias[n] for y [M, N] and bias [N] of
// y's dtype (f32, f16 or bf16): the base-layer bias of a Linear, added in
// fp32 and rounded once to the dtype. The result is valid after rec.Submit.
func (e *Dispatcher) AddBiasTo(rec *vk.Recorder, y, bias *vk.Tensor) error {
	if err := e.addBias(rec, y, bias, 1); err != nil {
		return fmt.Errorf("kernels: AddBiasTo: %w", err)
	}
	return nil
}

// AddScaledBiasTo is AddBiasTo of alpha·bias (the product in fp32, exact
// for alpha = 1): PEFT's lora_B bias, which the LoRA scale multiplies.
func (e *Dispatcher) AddScaledBiasTo(rec *vk.Recorder, y, bias *vk.Tensor, alpha float32) error {
	if !finite32(alpha) {
		return fmt.Errorf("kernels: AddScaledBiasTo: alpha %v is not finite: %w", alpha, ErrBadInput)
	}
	if err := e.addBias(rec, y, bias, alpha); err != nil {
		return fmt.Errorf("kernels: AddScaledBiasTo: %w", err)
	}
	return nil
}

func (e *Dispatcher) addBias(rec *vk.Recorder, y, bias *vk.Tensor, alpha float32) error {
	if rec == nil {
		return fmt.Errorf("recorder is nil: %w", ErrBadInput)
	}
	if err := checkOperand("Y", y); err != nil {
		return err
	}
	if y.Rank() != 2 {
		return fmt.Errorf("Y %s must be 2-D [M,N]: %w", y, ErrBadInput)
	}
	if err := CheckBias(bias, y.Dim(1), y.DType(), "Y "+y.String()); err != nil {
		return err
	}
	return e.dispatchAdd(rec, shaders.AddKey{D: y.DType(), Bias: true}, y.Dim(0), y.Dim(1), alpha, y, bias)
}

func checkAdd(rec *vk.Recorder, dst, src *vk.Tensor, alpha float32) error {
	if rec == nil {
		return fmt.Errorf("recorder is nil: %w", ErrBadInput)
	}
	if err := checkOperand("dst", dst); err != nil {
		return err
	}
	if err := checkOperand("src", src); err != nil {
		return err
	}
	if src.DType() != dst.DType() || !slices.Equal(src.Shape(), dst.Shape()) {
		return fmt.Errorf("src %s must have the shape and dtype of dst %s: %w", src, dst, ErrBadInput)
	}
	if !finite32(alpha) {
		return fmt.Errorf("alpha %v is not finite: %w", alpha, ErrBadInput)
	}
	return nil
}

// checkOperand reports a nil or released tensor, a dtype the add kernels
// lack, or one too large for their 32-bit indices.
func checkOperand(name string, t *vk.Tensor) error {
	switch {
	case t == nil || t.Released():
		return fmt.Errorf("%s is nil or released: %w", name, ErrBadInput)
	case !t.DType().IsFloat():
		return fmt.Errorf("%s %s must be f32, f16 or bf16: %w", name, t, ErrBadInput)
	case t.Numel() > maxAddElems:
		return fmt.Errorf("%s %s has more than 2^31 elements: %w", name, t, ErrBadInput)
	}
	return nil
}

// CheckBias validates a base-layer bias: present, 1-D [out], of the layer
// dtype d; of names what it belongs to for the message.
func CheckBias(bias *vk.Tensor, out int, d dtype.DType, of string) error {
	if bias == nil || bias.Released() {
		return fmt.Errorf("bias of %s is nil or released: %w", of, ErrBadInput)
	}
	if bias.Rank() != 1 || bias.Dim(0) != out || bias.DType() != d {
		return fmt.Errorf("bias %s must be 1-D %s[%d] for %s: %w", bias, d, out, of, ErrBadInput)
	}
	return nil
}

// dispatchAdd records add.comp over dst seen as [rows, cols], on the
// elementwise kernels' grid (elementGrid).
func (e *Dispatcher) dispatchAdd(rec *vk.Recorder, key shaders.AddKey, rows, cols int, alpha float32, dst, src *vk.Tensor) error {
	k, err := e.dev.ShaderKernel(key, addWG)
	if err != nil {
		return err
	}
	p := shaders.AddPush{Rows: uint32(rows), Cols: uint32(cols), Alpha: alpha}
	return rec.Dispatch(k, e.elementGrid(rows, cols), vk.PushBytes(&p), dst.Binding(), src.Binding())
}
