package kernels

import (
	"fmt"

	"github.com/vklora/vklora/activation"
	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
)

const gatedWG = 256

// Gated records the gated MLP's elementwise kernel for storage dtype d
// over count elements in rows of row: forward h = act(e)·g with bindings
// (e, g, h), or with back the backward, bindings (e, g, dh, h, de, dg),
// which recomputes h and writes dh·∂h/∂e and dh·∂h/∂g. The grid is 2-D by
// rows, so counts beyond 2^31 index correctly. The caller has validated
// the tensors (package lora's MLP does).
func (e *Dispatcher) Gated(rec *vk.Recorder, act activation.Activation, back bool, d dtype.DType, count, row int, bufs ...vk.Binding) error {
	key := shaders.GatedKey{Act: act, D: d, Back: back}
	if row < 1 || count < row || count%row != 0 {
		return fmt.Errorf("kernels: %s: %d elements in rows of %d: %w", key.Name(), count, row, ErrBadInput)
	}
	// One 16-byte word per invocation where rows are whole words and every
	// binding starts on one (gated.comp's WIDE), else one element.
	per := 16 / d.Size()
	if row%per != 0 {
		per = 1
	}
	for _, b := range bufs {
		if b.Offset()%16 != 0 {
			per = 1
		}
	}
	k, err := e.dev.ShaderKernel(key, gatedWG, b32(per > 1))
	if err != nil {
		return err
	}
	p := shaders.GatedPush{Count: uint32(count), Row: uint32(row)}
	return rec.Dispatch(k, [3]uint32{uint32(ceilDiv(row/per, gatedWG)), e.gridRows(ceilDiv(count, row)), 1}, vk.PushBytes(&p), bufs...)
}
