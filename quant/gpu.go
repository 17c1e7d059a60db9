package quant

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
)

// gpuWG is the workgroup size of the NF4 kernels (a power of two; the
// quantizer's shared-memory reduction relies on that).
const gpuWG = 256

// maxGridX bounds the x extent of the 2-D grids: far below the 65535 every
// device allows, so the y extent covers counts up to 2^32.
const maxGridX = 1024

// kernel builds (or fetches from the device's cache) the NF4 kernel op for
// dense dtype d with the NF4 kernels' workgroup size.
func kernel(dev *vk.Device, op shaders.NF4Op, d dtype.DType) (*vk.Kernel, error) {
	return dev.ShaderKernel(shaders.NF4Key{Op: op, D: d}, gpuWG)
}

// grid2D splits units (workgroups' worth of work) over x and y: x ≤ maxGridX.
func grid2D(units int) (gx, gy int) {
	gx = min(units, maxGridX)
	return gx, ceilDiv(units, gx)
}

// checkFloat refuses a dense dtype the NF4 kernels have no variant for.
func checkFloat(d dtype.DType) error {
	if !d.IsFloat() {
		return fmt.Errorf("dtype %v is not f32, f16 or bf16", d)
	}
	return nil
}

// DequantizeOnDevice records the decoding of w into out, a dense [Out, In] tensor
// of w.DType, bit for bit as the CPU Dequantize(To). The fused NF4 matmul never
// needs this; it is for checks and for callers that want a dense copy.
// Recorder has no device accessor, so the device that owns rec comes along.
func DequantizeOnDevice(dev *vk.Device, rec *vk.Recorder, w *DeviceNF4, out *vk.Tensor) error {
	if w != nil && !w.Released() {
		return DequantizeRegionOnDevice(dev, rec, w, out, 0, 0, w.Out, w.In)
	}
	return DequantizeRegionOnDevice(dev, rec, w, out, 0, 0, 0, 0)
}

// DequantizeRegionOnDevice records the decoding of the rows×cols region of
// w whose first element is (row0, col0) into out, a dense [rows, cols]
// tensor of w.DType, bit for bit as the CPU decoder. The engine's NF4
// matmul uses it for slabs of a weight, never the whole of it.
func DequantizeRegionOnDevice(dev *vk.Device, rec *vk.Recorder, w *DeviceNF4, out *vk.Tensor, row0, col0, rows, cols int) error {
	switch {
	case dev == nil || rec == nil:
		return fmt.Errorf("quant: DequantizeOnDevice: device or recorder is nil")
	case rec.Device() != dev:
		return fmt.Errorf("quant: DequantizeOnDevice: the recorder belongs to another device")
	case w == nil || w.Released():
		return fmt.Errorf("quant: DequantizeOnDevice: weight is nil or released")
	case out == nil || out.Released():
		return fmt.Errorf("quant: DequantizeOnDevice: output is nil or released")
	}
	if row0 < 0 || col0 < 0 || rows < 1 || cols < 1 || row0+rows > w.Out || col0+cols > w.In {
		return fmt.Errorf("quant: DequantizeOnDevice: region [%d:%d, %d:%d] outside %s", row0, row0+rows, col0, col0+cols, w)
	}
	if out.Rank() != 2 || out.Dim(0) != rows || out.Dim(1) != cols || out.DType() != w.DType {
		return fmt.Errorf("quant: DequantizeOnDevice: output %s, want %s[%d %d] for %s", out, w.DType, rows, cols, w)
	}
	if err := checkFloat(w.DType); err != nil {
		return fmt.Errorf("quant: DequantizeOnDevice: %w", err)
	}
	if w.Out*w.In > 1<<32-1 {
		return fmt.Errorf("quant: DequantizeOnDevice: %s has more than 2^32-1 elements", w)
	}
	k, err := kernel(dev, shaders.NF4Dequant, w.DType)
	if err != nil {
		return err
	}
	n := rows * cols
	gx, gy := grid2D(ceilDiv(n, gpuWG))
	p := shaders.NF4DequantPush{Count: uint32(n), Row: uint32(gx * gpuWG), Blocksize: uint32(w.Blocksize),
		Src0: uint32(row0*w.In + col0), SrcLd: uint32(w.In), Cols: uint32(cols)}
	return rec.Dispatch(k, [3]uint32{uint32(gx), uint32(gy), 1}, vk.PushBytes(&p),
		w.Packed.Binding(), w.State.Binding(), out.Binding())
}
