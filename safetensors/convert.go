package safetensors

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
)

// ToDType maps a safetensors dtype name to the engine's dtype.DType. Only
// F32, F16, BF16 and U8 have engine equivalents.
func ToDType(name string) (dtype.DType, error) {
	switch name {
	case "F32":
		return dtype.F32, nil
	case "F16":
		return dtype.F16, nil
	case "BF16":
		return dtype.BF16, nil
	case "U8":
		return dtype.U8, nil
	}
	return 0, fmt.Errorf("safetensors: dtype %q has no engine equivalent (want F32, F16, BF16 or U8)", name)
}

// FromDType is the safetensors name of d ("F32", "F16", "BF16", "U8").
func FromDType(d dtype.DType) (string, error) {
	switch d {
	case dtype.F32:
		return "F32", nil
	case dtype.F16:
		return "F16", nil
	case dtype.BF16:
		return "BF16", nil
	case dtype.U8:
		return "U8", nil
	}
	return "", fmt.Errorf("safetensors: dtype %v has no safetensors name", d)
}

// Get returns the named tensor or an error naming the missing key.
func (f *File) Get(name string) (Tensor, error) {
	t, ok := f.Tensors[name]
	if !ok {
		return Tensor{}, fmt.Errorf("safetensors: no tensor %q", name)
	}
	return t, nil
}

// Float32 widens a F32, F16 or BF16 tensor exactly to float32 and returns it
// with its shape and storage type.
func (f *File) Float32(name string) ([]float32, []int, error) {
	t, err := f.Get(name)
	if err != nil {
		return nil, nil, err
	}
	d, err := ToDType(t.DType)
	if err != nil || !d.IsFloat() {
		return nil, nil, fmt.Errorf("safetensors: tensor %q has dtype %s, want F32, F16 or BF16", name, t.DType)
	}
	out := make([]float32, len(t.Data)/d.Size())
	dtype.Decode(d, t.Data, out)
	return out, t.Shape, nil
}

// Uint8 returns a copy of a U8 tensor's bytes and its shape.
func (f *File) Uint8(name string) ([]byte, []int, error) {
	t, err := f.Get(name)
	if err != nil {
		return nil, nil, err
	}
	if t.DType != "U8" {
		return nil, nil, fmt.Errorf("safetensors: tensor %q has dtype %s, want U8", name, t.DType)
	}
	return append([]byte(nil), t.Data...), t.Shape, nil
}

// PutFloat32 stores xs as a tensor of type d (rounding to nearest even for
// F16 and BF16). len(xs) must equal the product of shape.
func (f *File) PutFloat32(name string, d dtype.DType, shape []int, xs []float32) error {
	st, err := FromDType(d)
	if err != nil || !d.IsFloat() {
		return fmt.Errorf("safetensors: tensor %q: cannot store float32 values as %v", name, d)
	}
	if n := numel(shape); n != len(xs) {
		return fmt.Errorf("safetensors: tensor %q: shape %v holds %d elements, got %d values", name, shape, n, len(xs))
	}
	return f.Put(name, st, append([]int(nil), shape...), dtype.Encode(d, xs))
}

// numel is the product of shape, or -1 when a dimension is negative.
func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return -1
		}
		n *= d
	}
	return n
}
