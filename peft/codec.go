package peft

import (
	"encoding/binary"
	"math"

	"github.com/vklora/vklora/dtype"
)

// decodeExact widens little-endian F32, F16 or BF16 elements to float32,
// keeping every bit: unlike dtype.Decode, an f16 NaN keeps its payload and
// its signalling bit. With encodeExact this makes Save(Load(dir)) write
// back the very bytes that were read, whatever they are.
func decodeExact(d dtype.DType, b []byte) []float32 {
	out := make([]float32, len(b)/d.Size())
	switch d {
	case dtype.F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case dtype.BF16:
		for i := range out {
			out[i] = dtype.BF16ToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case dtype.F16:
		for i := range out {
			out[i] = f16ToFloat32Exact(binary.LittleEndian.Uint16(b[2*i:]))
		}
	}
	return out
}

// encodeExact is the inverse of decodeExact for values that came from d,
// and rounds to nearest even (NaN stays NaN) for any other value.
func encodeExact(d dtype.DType, xs []float32) []byte {
	out := make([]byte, len(xs)*d.Size())
	switch d {
	case dtype.F32:
		for i, x := range xs {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
		}
	case dtype.BF16:
		for i, x := range xs {
			binary.LittleEndian.PutUint16(out[2*i:], bf16FromFloat32Exact(x))
		}
	case dtype.F16:
		for i, x := range xs {
			binary.LittleEndian.PutUint16(out[2*i:], f16FromFloat32Exact(x))
		}
	}
	return out
}

// roundExact rounds xs to d in place, as encodeExact then decodeExact would.
func roundExact(d dtype.DType, xs []float32) {
	if d == dtype.F32 {
		return
	}
	copy(xs, decodeExact(d, encodeExact(d, xs)))
}

func f16ToFloat32Exact(h uint16) float32 {
	if h&0x7c00 == 0x7c00 && h&0x03ff != 0 { // NaN: move the 10 payload bits up, quiet bit included
		return math.Float32frombits(uint32(h&0x8000)<<16 | 0x7f800000 | uint32(h&0x03ff)<<13)
	}
	return dtype.F16ToFloat32(h)
}

func f16FromFloat32Exact(x float32) uint16 {
	b := math.Float32bits(x)
	if b&0x7fffffff > 0x7f800000 && b&0x1fff == 0 { // a NaN that an f16 NaN widens to
		return uint16(b>>16)&0x8000 | 0x7c00 | uint16(b>>13)&0x03ff
	}
	return dtype.F16FromFloat32(x)
}

func bf16FromFloat32Exact(x float32) uint16 {
	b := math.Float32bits(x)
	if b&0x7fffffff > 0x7f800000 && b&0xffff == 0 { // a NaN that a bf16 NaN widens to
		return uint16(b >> 16)
	}
	return dtype.BF16FromFloat32(x)
}
