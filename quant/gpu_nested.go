package quant

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
)

// UploadNested is Upload that decodes double-quantized scales on the GPU
// (recorded on rec) instead of on the CPU: only the 8-bit codes and the
// nested scales cross the bus. The result equals Upload's bit for bit once
// rec is submitted; the uploaded nested state is held by rec until then.
// Weights without nested scales are uploaded as by Upload.
func UploadNested(dev *vk.Device, rec *vk.Recorder, w *NF4Weight) (*DeviceNF4, error) {
	if dev == nil || rec == nil {
		return nil, fmt.Errorf("quant: UploadNested: device or recorder is nil")
	}
	if w == nil || w.State.Nested == nil {
		return Upload(dev, w)
	}
	if err := w.Validate(); err != nil {
		return nil, fmt.Errorf("quant: UploadNested: %w", err)
	}
	s, ns := &w.State, w.State.Nested
	nb := s.NumBlocks()
	k, err := kernel(dev, shaders.NF4Absmax, dtype.F32)
	if err != nil {
		return nil, err
	}
	var temps []*vk.Tensor
	fail := func(d *DeviceNF4, err error) (*DeviceNF4, error) {
		for _, t := range temps {
			t.Release()
		}
		d.Release()
		return nil, fmt.Errorf("quant: UploadNested %v: %w", s.Shape, err)
	}
	d := &DeviceNF4{Out: s.Shape[0], In: s.Shape[1], Blocksize: s.Blocksize, DType: s.DType}
	if d.Packed, err = dev.TensorFromBytes(dtype.U8, w.Packed, len(w.Packed)); err != nil {
		return fail(nil, err)
	}
	if d.State, err = dev.NewTensor(dtype.F32, 16+nb); err != nil {
		d.Packed.Release()
		return fail(nil, err)
	}
	if err := d.State.Buffer().Upload(0, dtype.Encode(dtype.F32, s.Code[:])); err != nil {
		return fail(d, err)
	}
	for _, up := range []func() (*vk.Tensor, error){
		func() (*vk.Tensor, error) { return dev.TensorFromBytes(dtype.U8, ns.QAbsmax, len(ns.QAbsmax)) },
		func() (*vk.Tensor, error) { return dev.TensorFrom(dtype.F32, ns.Absmax, len(ns.Absmax)) },
		func() (*vk.Tensor, error) { return dev.TensorFrom(dtype.F32, ns.Code[:], len(ns.Code)) },
	} {
		t, err := up()
		if err != nil {
			return fail(d, err)
		}
		temps = append(temps, t)
	}
	gx, gy := grid2D(ceilDiv(nb, gpuWG))
	p := shaders.NF4AbsmaxPush{Count: uint32(nb), Row: uint32(gx * gpuWG), NestedBlocksize: uint32(ns.Blocksize), Offset: ns.Offset}
	if err := rec.Dispatch(k, [3]uint32{uint32(gx), uint32(gy), 1}, vk.PushBytes(&p),
		temps[0].Binding(), temps[1].Binding(), temps[2].Binding(), d.State.Binding()); err != nil {
		return fail(d, err)
	}
	for _, t := range temps {
		rec.Hold(t)
	}
	return d, nil
}
