package vk

import (
	"fmt"
	"math"

	"github.com/vklora/vklora/dtype"
)

// Tensor is a dense row-major array of one dtype in a device buffer. The last
// dimension is contiguous. A Tensor owns its buffer (Release frees it),
// except a view (View), which borrows its parent's.
type Tensor struct {
	buf   *Buffer
	shape []int
	dt    dtype.DType
	owner *Tensor // a view's: the tensor that owns the buffer; nil for an owner
}

// root is the tensor that owns t's buffer: t itself unless t is a view.
func (t *Tensor) root() *Tensor {
	if t.owner != nil {
		return t.owner
	}
	return t
}

// View returns a tensor of t's dtype and the given shape over the first
// bytes of t's buffer, for reusing one allocation under several shapes. The
// view owns nothing: its Release does nothing, and it is released when t
// is. Its shape may hold no more bytes than t.
func (t *Tensor) View(shape ...int) (*Tensor, error) {
	if t.Released() {
		return nil, fmt.Errorf("vk: View of %v: %w", shape, ErrReleased)
	}
	n, err := checkShape(t.dt, shape)
	if err != nil {
		return nil, err
	}
	if n*uint64(t.dt.Size()) > t.Bytes() {
		return nil, fmt.Errorf("vk: View %s%v is larger than %s: %w", t.dt, shape, t, ErrInvalidArgument)
	}
	return &Tensor{buf: t.buf, shape: append([]int(nil), shape...), dt: t.dt, owner: t.root()}, nil
}

// NewTensor allocates an uninitialised tensor. Every dimension must be ≥ 1;
// a tensor larger than the device's storage-buffer range is ErrTooLarge.
func (d *Device) NewTensor(dt dtype.DType, shape ...int) (*Tensor, error) {
	n, err := checkShape(dt, shape)
	if err != nil {
		return nil, err
	}
	bytes := n * uint64(dt.Size())
	b, err := d.NewBuffer(bytes)
	if err != nil {
		return nil, fmt.Errorf("vk: NewTensor %s%v: %w", dt, shape, err)
	}
	return &Tensor{buf: b, shape: append([]int(nil), shape...), dt: dt}, nil
}

// TensorFrom allocates a tensor and uploads data, rounded to dt (nearest
// even). len(data) must equal the shape's element count.
func (d *Device) TensorFrom(dt dtype.DType, data []float32, shape ...int) (*Tensor, error) {
	t, err := d.NewTensor(dt, shape...)
	if err != nil {
		return nil, err
	}
	if err := t.Upload(data); err != nil {
		t.Release()
		return nil, err
	}
	return t, nil
}

// TensorFromBytes allocates a tensor and uploads raw little-endian elements.
func (d *Device) TensorFromBytes(dt dtype.DType, raw []byte, shape ...int) (*Tensor, error) {
	t, err := d.NewTensor(dt, shape...)
	if err != nil {
		return nil, err
	}
	if err := t.UploadBytes(raw); err != nil {
		t.Release()
		return nil, err
	}
	return t, nil
}

func checkShape(dt dtype.DType, shape []int) (uint64, error) {
	if !dt.Valid() {
		return 0, fmt.Errorf("vk: tensor dtype %s is not valid: %w", dt, ErrInvalidArgument)
	}
	if len(shape) == 0 {
		return 0, fmt.Errorf("vk: tensor shape is empty: %w", ErrInvalidArgument)
	}
	n := uint64(1)
	for _, s := range shape {
		if s < 1 {
			return 0, fmt.Errorf("vk: tensor shape %v has a dimension < 1: %w", shape, ErrInvalidArgument)
		}
		if n > math.MaxUint64/8/uint64(s) {
			return 0, fmt.Errorf("vk: tensor shape %v overflows: %w", shape, ErrTooLarge)
		}
		n *= uint64(s)
	}
	return n, nil
}

// Shape returns a copy of the dimensions.
func (t *Tensor) Shape() []int { return append([]int(nil), t.shape...) }

// Dim returns dimension i (negative counts from the end).
func (t *Tensor) Dim(i int) int {
	if i < 0 {
		i += len(t.shape)
	}
	return t.shape[i]
}

// Rank is the number of dimensions.
func (t *Tensor) Rank() int { return len(t.shape) }

// DType is the element type.
func (t *Tensor) DType() dtype.DType { return t.dt }

// Numel is the number of elements.
func (t *Tensor) Numel() int {
	n := 1
	for _, s := range t.shape {
		n *= s
	}
	return n
}

// Bytes is the size of the elements in bytes (the buffer may be padded).
func (t *Tensor) Bytes() uint64 { return uint64(t.Numel()) * uint64(t.dt.Size()) }

// Buffer is the backing buffer.
func (t *Tensor) Buffer() *Buffer { return t.buf }

// Binding binds the tensor's elements (rounded up to 4 bytes, within the
// buffer's padding) for a kernel.
func (t *Tensor) Binding() Binding { return t.buf.Range(0, (t.Bytes()+3)&^3) }

// Released reports whether Release was called.
func (t *Tensor) Released() bool { return t == nil || t.buf == nil || t.buf.buf == nil }

// String describes the tensor, e.g. "bf16[8192 4096]".
func (t *Tensor) String() string {
	if t == nil {
		return "<nil tensor>"
	}
	return fmt.Sprintf("%s%v", t.dt, t.shape)
}

// Upload writes data (rounded to the tensor's dtype) into the tensor.
func (t *Tensor) Upload(data []float32) error {
	if t.Released() {
		return fmt.Errorf("vk: Upload: tensor: %w", ErrReleased)
	}
	if len(data) != t.Numel() {
		return fmt.Errorf("vk: Upload into %s: %d values, want %d: %w", t, len(data), t.Numel(), ErrInvalidArgument)
	}
	if !t.dt.IsFloat() {
		return fmt.Errorf("vk: Upload into %s: not a float tensor, use UploadBytes: %w", t, ErrInvalidArgument)
	}
	return t.buf.Upload(0, dtype.Encode(t.dt, data))
}

// UploadBytes writes raw little-endian elements.
func (t *Tensor) UploadBytes(raw []byte) error {
	if t.Released() {
		return fmt.Errorf("vk: UploadBytes: tensor: %w", ErrReleased)
	}
	if uint64(len(raw)) != t.Bytes() {
		return fmt.Errorf("vk: UploadBytes into %s: %d bytes, want %d: %w", t, len(raw), t.Bytes(), ErrInvalidArgument)
	}
	return t.buf.Upload(0, raw)
}

// Float32 downloads the tensor and widens it to float32.
func (t *Tensor) Float32() ([]float32, error) {
	if t.Released() {
		return nil, fmt.Errorf("vk: Float32: tensor: %w", ErrReleased)
	}
	raw := make([]byte, t.Bytes())
	if err := t.buf.Download(0, raw); err != nil {
		return nil, err
	}
	out := make([]float32, t.Numel())
	dtype.Decode(t.dt, raw, out)
	return out, nil
}

// RawBytes downloads the tensor's bytes.
func (t *Tensor) RawBytes() ([]byte, error) {
	if t.Released() {
		return nil, fmt.Errorf("vk: RawBytes: tensor: %w", ErrReleased)
	}
	raw := make([]byte, t.Bytes())
	return raw, t.buf.Download(0, raw)
}

// Release frees the tensor's buffer (a view's does nothing). Safe to call
// twice and on nil.
func (t *Tensor) Release() {
	if t == nil || t.buf == nil || t.owner != nil {
		return
	}
	t.buf.Release()
}

// Overlaps reports whether a and b read or write any common byte of device
// memory (a view and its owner, two views of one buffer, or one tensor
// twice). Nil or released tensors overlap nothing.
func Overlaps(a, b *Tensor) bool {
	if a.Released() || b.Released() || a.buf != b.buf {
		return false
	}
	ab, bb := a.Binding(), b.Binding()
	return ab.offset < bb.offset+bb.size && bb.offset < ab.offset+ab.size
}

// Close is Release as an io.Closer, for defer and resource lists.
func (t *Tensor) Close() error { t.Release(); return nil }
