package quant

import (
	"fmt"
	"unsafe"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
)

// gpuWG is the workgroup size of the NF4 kernels (a power of two; the
// quantizer's shared-memory reduction relies on that).
const gpuWG = 256

// maxGridX bounds the x extent of the 2-D grids: far below the 65535 every
// device allows, so the y extent covers counts up to 2^32.
const maxGridX = 1024

// kernel builds (or fetches from the device's cache) a registry shader
// with the NF4 kernels' workgroup size.
func kernel(dev *vk.Device, name string, buffers, push int) (*vk.Kernel, error) {
	return dev.ShaderKernel(name, buffers, push, gpuWG)
}

// grid2D splits units (workgroups' worth of work) over x and y: x ≤ maxGridX.
func grid2D(units int) (gx, gy int) {
	gx = min(units, maxGridX)
	return gx, ceilDiv(units, gx)
}

// dequantPush mirrors nf4_dequant.comp's push block.
type dequantPush struct{ Count, Row, Blocksize uint32 }

var _ [12]byte = [unsafe.Sizeof(dequantPush{})]byte{}

// floatToken is the shader-name token of a dense float dtype.
func floatToken(d dtype.DType) (string, error) {
	switch d {
	case dtype.F32, dtype.F16, dtype.BF16:
		return d.String(), nil
	}
	return "", fmt.Errorf("dtype %v is not f32, f16 or bf16", d)
}

// DequantizeOnDevice records the decoding of w into out, a dense [Out, In] tensor
// of w.DType, bit for bit as the CPU Dequantize(To). The fused NF4 matmul never
// needs this; it is for checks and for callers that want a dense copy.
// Recorder has no device accessor, so the device that owns rec comes along.
func DequantizeOnDevice(dev *vk.Device, rec *vk.Recorder, w *DeviceNF4, out *vk.Tensor) error {
	switch {
	case dev == nil || rec == nil:
		return fmt.Errorf("quant: DequantizeOnDevice: device or recorder is nil")
	case w == nil || w.Released():
		return fmt.Errorf("quant: DequantizeOnDevice: weight is nil or released")
	case out == nil || out.Released():
		return fmt.Errorf("quant: DequantizeOnDevice: output is nil or released")
	}
	if out.Rank() != 2 || out.Dim(0) != w.Out || out.Dim(1) != w.In || out.DType() != w.DType {
		return fmt.Errorf("quant: DequantizeOnDevice: output %s, want %s[%d %d] for %s", out, w.DType, w.Out, w.In, w)
	}
	tok, err := floatToken(w.DType)
	if err != nil {
		return fmt.Errorf("quant: DequantizeOnDevice: %w", err)
	}
	n := w.Out * w.In
	if n > 1<<32-1 {
		return fmt.Errorf("quant: DequantizeOnDevice: %s has more than 2^32-1 elements", w)
	}
	k, err := kernel(dev, "nf4_dequant_"+tok, 3, int(unsafe.Sizeof(dequantPush{})))
	if err != nil {
		return err
	}
	gx, gy := grid2D(ceilDiv(n, gpuWG))
	p := dequantPush{Count: uint32(n), Row: uint32(gx * gpuWG), Blocksize: uint32(w.Blocksize)}
	return rec.Dispatch(k, [3]uint32{uint32(gx), uint32(gy), 1}, vk.PushBytes(&p),
		w.Packed.Binding(), w.State.Binding(), out.Binding())
}
