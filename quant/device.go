package quant

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
)

// DeviceNF4 is an NF4 weight on the GPU, ready for the fused dequant-matmul
// and the dequantize kernel: the packed codes as uploaded, and a state
// tensor holding the 16-entry code map followed by one f32 scale per block.
// Double-quantized scales are decoded once at upload with exactly the
// float32 operations of the reference decoder, so every kernel sees the same
// scales as the CPU. The dense [out, in] weight is never materialised.
type DeviceNF4 struct {
	Packed    *vk.Tensor // U8 [(out·in+1)/2]
	State     *vk.Tensor // F32 [16 + NumBlocks]
	Out, In   int
	Blocksize int
	DType     dtype.DType // dtype each dequantized value is rounded to
}

// Upload copies w to the device. The caller releases the result.
func Upload(dev *vk.Device, w *NF4Weight) (*DeviceNF4, error) {
	if w == nil {
		return nil, fmt.Errorf("quant: Upload: weight is nil")
	}
	if err := w.Validate(); err != nil {
		return nil, fmt.Errorf("quant: Upload: %w", err)
	}
	s := &w.State
	packed, err := dev.TensorFromBytes(dtype.U8, w.Packed, len(w.Packed))
	if err != nil {
		return nil, fmt.Errorf("quant: Upload packed NF4 %v: %w", s.Shape, err)
	}
	state := make([]float32, 0, 16+s.NumBlocks())
	state = append(state, s.Code[:]...)
	state = append(state, w.Absmax()...)
	st, err := dev.TensorFrom(dtype.F32, state, len(state))
	if err != nil {
		packed.Release()
		return nil, fmt.Errorf("quant: Upload NF4 state %v: %w", s.Shape, err)
	}
	return &DeviceNF4{Packed: packed, State: st, Out: s.Shape[0], In: s.Shape[1], Blocksize: s.Blocksize, DType: s.DType}, nil
}

// Shape is [out, in] of the dense weight.
func (d *DeviceNF4) Shape() [2]int { return [2]int{d.Out, d.In} }

// Bytes is the device memory the weight holds.
func (d *DeviceNF4) Bytes() uint64 { return d.Packed.Bytes() + d.State.Bytes() }

// String describes the weight, e.g. "nf4[4096 14336]/64→bf16".
func (d *DeviceNF4) String() string {
	return fmt.Sprintf("nf4[%d %d]/%d→%s", d.Out, d.In, d.Blocksize, d.DType)
}

// Released reports whether Release was called (or d is nil).
func (d *DeviceNF4) Released() bool { return d == nil || d.Packed.Released() }

// Release frees both tensors; safe to call twice.
func (d *DeviceNF4) Release() {
	if d == nil {
		return
	}
	d.Packed.Release()
	d.State.Release()
}

// Check verifies that d's fields agree with its buffers, as the kernels
// that read it assume: positive sizes, a valid block size, a packed U8
// buffer of (Out·In+1)/2 codes, an F32 state of the 16-entry code table and
// one scale per block, a float dtype, and an element count the 32-bit
// indices of the NF4 kernels can address. A DeviceNF4 from Upload always
// passes; a hand-built one that does not would make kernels read past
// its buffers.
func (d *DeviceNF4) Check() error {
	switch {
	case d == nil || d.Released() || d.State.Released():
		return fmt.Errorf("quant: NF4 weight is nil or released")
	case d.Out < 1 || d.In < 1:
		return fmt.Errorf("quant: NF4 weight %s: Out %d and In %d must be positive", d, d.Out, d.In)
	case !validBlocksize(d.Blocksize):
		return fmt.Errorf("quant: NF4 weight %s: blocksize %d is not a power of two in [%d, %d]", d, d.Blocksize, MinBlocksize, MaxBlocksize)
	case !d.DType.IsFloat():
		return fmt.Errorf("quant: NF4 weight %s: dtype %v is not f32, f16 or bf16", d, d.DType)
	case uint64(d.Out)*uint64(d.In) > 1<<32-1:
		return fmt.Errorf("quant: NF4 weight %s has more than 2^32-1 elements, beyond the kernels' 32-bit indices", d)
	}
	n := d.Out * d.In
	blocks := (n + d.Blocksize - 1) / d.Blocksize
	if d.Packed.DType() != dtype.U8 || d.Packed.Numel() != (n+1)/2 {
		return fmt.Errorf("quant: NF4 weight %s: packed codes %s, want u8[%d]", d, d.Packed, (n+1)/2)
	}
	if d.State.DType() != dtype.F32 || d.State.Numel() != 16+blocks {
		return fmt.Errorf("quant: NF4 weight %s: state %s, want f32[%d] (16 codes and %d scales)", d, d.State, 16+blocks, blocks)
	}
	return nil
}

// Close is Release as an io.Closer.
func (d *DeviceNF4) Close() error { d.Release(); return nil }
