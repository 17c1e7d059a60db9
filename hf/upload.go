package hf

import (
	"fmt"
	"io"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/safetensors"
	"github.com/vklora/vklora/vk"
)

// uploadChunk is the most tensor bytes read into memory at once when a
// tensor is streamed to the device: a 14336×4096 bf16 down_proj (112 MiB)
// goes up in pieces, never whole. Tests shrink it to cover the seams.
var uploadChunk = 8 << 20

// Upload streams the named float tensor (F32, F16 or BF16) to a new device
// tensor of its shape and dtype d, converting on the way (rounding to
// nearest even when narrowing); d 0 keeps the stored dtype. At most
// uploadChunk bytes of it are in host memory at a time. The caller
// releases the result.
func (c *Checkpoint) Upload(dev *vk.Device, name string, d dtype.DType) (*vk.Tensor, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	info, _, ok := c.Info(name)
	if !ok {
		return nil, fmt.Errorf("hf: Upload: %s: no tensor %q: %w", c.dir, name, ErrBadCheckpoint)
	}
	if d == 0 {
		var err error
		if d, err = safetensors.ToDType(info.DType); err != nil || !d.IsFloat() {
			return nil, fmt.Errorf("hf: Upload: %s: tensor %q: dtype %s is not F32, F16 or BF16: %w", c.path(name), name, info.DType, ErrUnsupported)
		}
	}
	return c.upload(dev, name, d, info.Shape)
}

// checkDevice validates the device and dtype arguments shared by the loaders.
func checkDevice(fn string, dev *vk.Device, d dtype.DType) error {
	if dev == nil || dev.Released() {
		return fmt.Errorf("hf: %s: device is nil or released: %w", fn, lora.ErrBadInput)
	}
	if !d.IsFloat() {
		return fmt.Errorf("hf: %s: device dtype %v is not f32, f16 or bf16: %w", fn, d, lora.ErrBadInput)
	}
	return nil
}

// upload streams tensor name, whose element count shape must hold, to a
// device tensor of dtype d and the given shape.
func (c *Checkpoint) upload(dev *vk.Device, name string, d dtype.DType, shape []int) (*vk.Tensor, error) {
	if err := checkDevice("Upload", dev, d); err != nil {
		return nil, err
	}
	if err := c.alive(); err != nil {
		return nil, err
	}
	info, path, ok := c.Info(name)
	if !ok {
		return nil, fmt.Errorf("hf: %s: no tensor %q: %w", c.dir, name, ErrBadCheckpoint)
	}
	r, _ := c.reader(name)
	src, err := safetensors.ToDType(info.DType)
	if err != nil || !src.IsFloat() {
		return nil, fmt.Errorf("hf: %s: tensor %q: dtype %s is not F32, F16 or BF16: %w", path, name, info.DType, ErrUnsupported)
	}
	if len(info.Shape) == 0 || info.NumElements() == 0 {
		return nil, fmt.Errorf("hf: %s: tensor %q of shape %v is a scalar or empty; device tensors have at least one element per dimension: %w", path, name, info.Shape, lora.ErrBadInput)
	}
	if n := (safetensors.Tensor{Shape: shape}).NumElements(); n != info.NumElements() {
		return nil, fmt.Errorf("hf: %s: tensor %q: shape %v does not fit %v: %w", path, name, info.Shape, shape, ErrBadCheckpoint)
	}
	sec, err := r.Section(name)
	if err != nil {
		return nil, fmt.Errorf("hf: %w", err)
	}
	t, err := dev.NewTensor(d, shape...)
	if err != nil {
		return nil, fmt.Errorf("hf: tensor %q %s%v: %w", name, d, shape, err)
	}
	if err := stream(t, sec, src, d); err != nil {
		t.Release()
		return nil, fmt.Errorf("hf: %s: tensor %q: %w", path, name, err)
	}
	return t, nil
}

// stream copies the elements of src-typed bytes from sec into t, chunk by
// chunk, converting each to t's dtype d.
func stream(t *vk.Tensor, sec *io.SectionReader, src, d dtype.DType) error {
	size := sec.Size()
	elems := max(1, uploadChunk/max(src.Size(), d.Size()))
	buf := make([]byte, min(int64(elems*src.Size()), size))
	var xs []float32
	if src != d {
		xs = make([]float32, len(buf)/src.Size())
	}
	var dst uint64
	for off := int64(0); off < size; {
		n := int(min(int64(len(buf)), size-off))
		// ReadAt may return io.EOF with a full read at the end.
		if got, err := sec.ReadAt(buf[:n], off); got != n {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read %d of %d bytes at %d: %w", got, n, off, err)
		}
		out := buf[:n]
		if src != d {
			k := n / src.Size()
			dtype.Decode(src, out, xs[:k])
			out = dtype.Encode(d, xs[:k])
		}
		if err := t.Buffer().Upload(dst, out); err != nil {
			return err
		}
		off += int64(n)
		dst += uint64(len(out))
	}
	return nil
}
