package quant

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
)

// QuantizeOnDevice records the NF4 quantization of the dense [out, in]
// weight w (f32, f16 or bf16) with the given blocksize and returns the
// result as a DeviceNF4 of w's dtype, ready for the fused matmul. After
// rec.Submit it matches QuantizeNF4(w, shape, blocksize, w.DType(), false)
// bit for bit: packed codes and float32 absmax (Download reads them back,
// double-quantizing on the CPU if asked).
//
// Exactness: 1/absmax is an integer long division in the shader, since GLSL
// division is approximate on some drivers (NVIDIA); the product w·(1/absmax)
// relies on Vulkan's correctly rounded f32 multiply. Two corner cases can
// differ from the CPU on drivers that flush subnormals (verified exact on
// lavapipe only): w·r subnormal (a weight more than 2^126 times smaller than
// its block's absmax), and absmax > 2^126 where the shader falls back to
// GLSL division. Neither arises in real checkpoints.
//
// The code map is uploaded immediately (a small synchronous copy); the
// caller releases the result, after the recording is submitted.
func QuantizeOnDevice(dev *vk.Device, rec *vk.Recorder, w *vk.Tensor, blocksize int) (*DeviceNF4, error) {
	switch {
	case dev == nil || rec == nil:
		return nil, fmt.Errorf("quant: QuantizeOnDevice: device or recorder is nil")
	case w == nil || w.Released():
		return nil, fmt.Errorf("quant: QuantizeOnDevice: weight is nil or released")
	case w.Rank() != 2:
		return nil, fmt.Errorf("quant: QuantizeOnDevice: weight %s must be 2-D [out, in]", w)
	case !validBlocksize(blocksize):
		return nil, fmt.Errorf("quant: QuantizeOnDevice: blocksize %d is not a power of two in [%d, %d]", blocksize, MinBlocksize, MaxBlocksize)
	}
	if err := checkFloat(w.DType()); err != nil {
		return nil, fmt.Errorf("quant: QuantizeOnDevice: %w", err)
	}
	n := w.Numel()
	if n > 1<<32-1-MaxBlocksize {
		return nil, fmt.Errorf("quant: QuantizeOnDevice: %s has too many elements for 32-bit indexing", w)
	}
	k, err := kernel(dev, shaders.NF4Quantize, w.DType())
	if err != nil {
		return nil, err
	}
	nb := ceilDiv(n, blocksize)
	packed, err := dev.NewTensor(dtype.U8, (n+1)/2)
	if err != nil {
		return nil, fmt.Errorf("quant: QuantizeOnDevice packed codes: %w", err)
	}
	state, err := dev.NewTensor(dtype.F32, 16+nb)
	if err != nil {
		packed.Release()
		return nil, fmt.Errorf("quant: QuantizeOnDevice state: %w", err)
	}
	d := &DeviceNF4{Packed: packed, State: state, Out: w.Dim(0), In: w.Dim(1), Blocksize: blocksize, DType: w.DType()}
	code := make([]byte, 4*len(NF4Table))
	for i, c := range NF4Table {
		binary.LittleEndian.PutUint32(code[4*i:], math.Float32bits(c))
	}
	if err := state.Buffer().Upload(0, code); err != nil {
		d.Release()
		return nil, fmt.Errorf("quant: QuantizeOnDevice code map: %w", err)
	}
	gx, gy := grid2D(nb)
	// The thresholds travel as push constants so NF4Thresholds stays the
	// one source of truth.
	p := shaders.NF4QuantizePush{Count: uint32(n), Blocksize: uint32(blocksize), NBlocks: uint32(nb), GX: uint32(gx), Thr: NF4Thresholds}
	if err := rec.Dispatch(k, [3]uint32{uint32(gx), uint32(gy), 1}, vk.PushBytes(&p),
		w.Binding(), packed.Binding(), state.Binding()); err != nil {
		d.Release()
		return nil, err
	}
	return d, nil
}

// Download reads d back as an NF4Weight (after the work that wrote it has
// been submitted). With doubleQuant the scales are double-quantized on the
// CPU, exactly as QuantizeNF4 does from the same float32 absmax.
func (d *DeviceNF4) Download(doubleQuant bool) (*NF4Weight, error) {
	if d.Released() {
		return nil, fmt.Errorf("quant: Download: weight is nil or released")
	}
	packed, err := d.Packed.RawBytes()
	if err != nil {
		return nil, fmt.Errorf("quant: Download packed: %w", err)
	}
	state, err := d.State.Float32()
	if err != nil {
		return nil, fmt.Errorf("quant: Download state: %w", err)
	}
	w := &NF4Weight{Packed: packed, State: QuantState{
		QuantType: "nf4", Blocksize: d.Blocksize, DType: d.DType, Shape: d.Shape(),
	}}
	copy(w.State.Code[:], state[:16])
	absmax := state[16:]
	if doubleQuant {
		w.State.Nested = doubleQuantize(absmax)
	} else {
		w.State.Absmax = absmax
	}
	if err := w.Validate(); err != nil {
		return nil, fmt.Errorf("quant: Download: %w", err)
	}
	return w, nil
}
