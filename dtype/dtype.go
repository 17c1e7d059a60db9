package dtype

import "fmt"

// DType is the storage type of a tensor's elements.
type DType uint8

const (
	// F32 is IEEE-754 binary32.
	F32 DType = iota + 1
	// F16 is IEEE-754 binary16.
	F16
	// BF16 is bfloat16: the upper half of a binary32.
	BF16
	// U8 is an unsigned byte (packed NF4 codes, 8-bit nested scales).
	U8
)

// Size is the number of bytes of one element.
func (d DType) Size() int {
	switch d {
	case F32:
		return 4
	case F16, BF16:
		return 2
	case U8:
		return 1
	}
	return 0
}

// Valid reports whether d is one of the defined types.
func (d DType) Valid() bool { return d >= F32 && d <= U8 }

// IsFloat reports whether d holds floating-point values.
func (d DType) IsFloat() bool { return d == F32 || d == F16 || d == BF16 }

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case F16:
		return "f16"
	case BF16:
		return "bf16"
	case U8:
		return "u8"
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Parse turns a name ("f32", "float32", "f16", "fp16", "float16", "bf16",
// "bfloat16", "u8", "uint8") into a DType.
func Parse(name string) (DType, error) {
	switch name {
	case "f32", "fp32", "float32", "F32":
		return F32, nil
	case "f16", "fp16", "float16", "F16":
		return F16, nil
	case "bf16", "bfloat16", "BF16":
		return BF16, nil
	case "u8", "uint8", "U8":
		return U8, nil
	}
	return 0, fmt.Errorf("dtype: unknown dtype %q (want f32, f16, bf16 or u8)", name)
}

// Floats lists the floating-point storage types, for table-driven tests and sweeps.
var Floats = []DType{F32, F16, BF16}
