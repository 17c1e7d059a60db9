package dtype

import (
	"math"

	"github.com/x448/float16"
)

// BF16FromFloat32 rounds f to the nearest bfloat16, ties to even. NaNs stay
// NaN (quieted) instead of rounding into infinity.
func BF16FromFloat32(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep the sign, force a quiet mantissa bit
		return uint16(b>>16) | 0x0040
	}
	// Add 0x7fff plus the lowest kept bit: rounds to nearest, ties to even.
	// Overflow into the exponent yields infinity, as IEEE rounding requires.
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// BF16ToFloat32 widens a bfloat16 exactly.
func BF16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F16FromFloat32 rounds f to the nearest binary16, ties to even.
func F16FromFloat32(f float32) uint16 { return uint16(float16.Fromfloat32(f)) }

// F16ToFloat32 widens a binary16 exactly.
func F16ToFloat32(h uint16) float32 { return float16.Frombits(h).Float32() }

// Round returns f rounded to d and widened back to float32: the value a
// tensor of type d holds after storing f. F32 and U8 return f unchanged.
func Round(d DType, f float32) float32 {
	switch d {
	case F16:
		return F16ToFloat32(F16FromFloat32(f))
	case BF16:
		return BF16ToFloat32(BF16FromFloat32(f))
	}
	return f
}

// RoundSlice rounds every element of xs to d in place.
func RoundSlice(d DType, xs []float32) {
	if d != F16 && d != BF16 {
		return
	}
	for i, x := range xs {
		xs[i] = Round(d, x)
	}
}

// Encode writes xs as little-endian elements of type d into a new byte slice.
// U8 is not a float type and panics; callers check IsFloat first.
func Encode(d DType, xs []float32) []byte {
	out := make([]byte, len(xs)*d.Size())
	switch d {
	case F32:
		for i, x := range xs {
			putU32(out[4*i:], math.Float32bits(x))
		}
	case F16:
		for i, x := range xs {
			putU16(out[2*i:], F16FromFloat32(x))
		}
	case BF16:
		for i, x := range xs {
			putU16(out[2*i:], BF16FromFloat32(x))
		}
	default:
		panic("dtype.Encode: not a float type: " + d.String())
	}
	return out
}

// Decode reads little-endian elements of type d from b into dst (len(dst)
// elements). U8 bytes are widened to their integer values.
func Decode(d DType, b []byte, dst []float32) {
	switch d {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(u32(b[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = F16ToFloat32(u16(b[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = BF16ToFloat32(u16(b[2*i:]))
		}
	case U8:
		for i := range dst {
			dst[i] = float32(b[i])
		}
	default:
		panic("dtype.Decode: unknown dtype " + d.String())
	}
}

func putU16(b []byte, v uint16) { b[0], b[1] = byte(v), byte(v>>8) }
func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}
func u16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }
func u32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
