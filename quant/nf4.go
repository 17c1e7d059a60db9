package quant

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
)

// NF4Table is the NF4 code book (bitsandbytes' quant_map), index = code.
// Every value is exactly representable in float32.
var NF4Table = [16]float32{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
	0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
	0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
}

// NF4Thresholds are the decision points of bitsandbytes' dQuantizeNF4: the
// decimal midpoints of adjacent table entries written in kernels.cu, as
// nvcc rounds them to float32 (conformance/gen/make_vectors.py's
// NF4_THRESHOLDS_HEX). The code
// of x is the number of thresholds t with x > t: the nearest entry, ties to
// the lower code, and 0 for NaN.
var NF4Thresholds = [15]float32{
	-0x1.b239b2p-1, -0x1.38a4e0p-1, -0x1.d70900p-2, -0x1.5bd4ecp-2, -0x1.e079d8p-3,
	-0x1.1a7178p-3, -0x1.74f0e2p-5, 0x1.45f5fep-5, 0x1.ec90c6p-4, 0x1.a0cfc0p-3,
	0x1.2b05a8p-2, 0x1.8ea7f2p-2, 0x1.00da06p-1, 0x1.491b5ep-1, 0x1.b913b2p-1,
}

// nf4Code counts thresholds strictly below x. A linear count rather than a
// search keeps NaN (all comparisons false) at code 0, as the kernel does.
func nf4Code(x float32) uint8 {
	var c uint8
	for _, t := range NF4Thresholds {
		if x > t {
			c++
		}
	}
	return c
}

// QuantizeNF4 quantizes w, the row-major [out, in] weight given by shape, to
// NF4 with the given blocksize, bit for bit as the conformance generator's
// nf4_encode (bitsandbytes' algorithm with a correctly rounded reciprocal).
// w is first rounded to d, the dtype the weight is dequantized to, so
// quantizing a float32 copy of a bf16 weight gives the checkpoint's bytes. With
// doubleQuant the scales are double-quantized (see NestedState) with blocks
// of NestedBlocksize. w must be finite.
func QuantizeNF4(w []float32, shape [2]int, blocksize int, d dtype.DType, doubleQuant bool) (*NF4Weight, error) {
	out, in := shape[0], shape[1]
	if out <= 0 || in <= 0 || out > maxElements/in {
		return nil, fmt.Errorf("quant: QuantizeNF4: shape %v must be positive with at most %d elements", shape, maxElements)
	}
	if n := out * in; len(w) != n {
		return nil, fmt.Errorf("quant: QuantizeNF4: shape %v needs %d values, w has %d", shape, n, len(w))
	}
	if !validBlocksize(blocksize) {
		return nil, fmt.Errorf("quant: QuantizeNF4: blocksize %d is not a power of two in [%d, %d]", blocksize, MinBlocksize, MaxBlocksize)
	}
	if !d.IsFloat() {
		return nil, fmt.Errorf("quant: QuantizeNF4: dtype %v is not a float type", d)
	}
	for i, x := range w {
		if !finite(x) {
			return nil, fmt.Errorf("quant: QuantizeNF4: w[%d] (row %d, col %d) = %v is not finite", i, i/in, i%in, x)
		}
	}
	wd := append([]float32(nil), w...)
	dtype.RoundSlice(d, wd)

	packed, absmax := encodeNF4(wd, blocksize)
	qw := &NF4Weight{Packed: packed, State: QuantState{
		QuantType: "nf4", Blocksize: blocksize, DType: d, Shape: shape, Code: NF4Table,
	}}
	if doubleQuant {
		qw.State.Nested = doubleQuantize(absmax)
	} else {
		qw.State.Absmax = absmax
	}
	return qw, nil
}

// encodeNF4 returns the packed codes and float32 per-block absmax of w.
func encodeNF4(w []float32, bs int) ([]byte, []float32) {
	n := len(w)
	nb := ceilDiv(n, bs)
	absmax := make([]float32, nb)
	packed := make([]byte, (n+1)/2)
	for b := 0; b < nb; b++ {
		lo, hi := b*bs, min((b+1)*bs, n)
		absmax[b] = maxAbs(w[lo:hi])
		// A zero block makes r = +Inf and every x NaN (code 0), as on the GPU.
		r := float32(1) / absmax[b]
		for k := lo; k < hi; k++ {
			setNibble(packed, k, nf4Code(float32(w[k]*r)))
		}
		// For odd n the last low nibble encodes the kernel's zero padding:
		// 0·r, which is code 7 unless the block is all zero (r = Inf, NaN).
		if hi == n && n%2 == 1 {
			setNibble(packed, n, nf4Code(float32(0*r)))
		}
	}
	return packed, absmax
}

func setNibble(packed []byte, k int, c uint8) {
	if k&1 == 0 {
		packed[k>>1] |= c << 4
	} else {
		packed[k>>1] |= c
	}
}

// doubleQuantize is the script's nested step: offset = mean(absmax) as a
// float32, v = absmax − offset, then 8-bit blockwise quantization of v over
// DynamicMap with blocks of NestedBlocksize.
func doubleQuantize(absmax []float32) *NestedState {
	offset := meanF32(absmax)
	v := make([]float32, len(absmax))
	for i, a := range absmax {
		v[i] = float32(a - offset)
	}
	code := DynamicMap()
	q, a2 := quantizeBlockwise(v, &code, NestedBlocksize)
	return &NestedState{QAbsmax: q, Absmax: a2, Code: code, Blocksize: NestedBlocksize, Offset: offset}
}

// meanF32 mirrors torch's float32 mean on the CPU, float32(sum) / n, but
// takes the sum in float64 and rounds it once. torch sums in float32 in a
// cascade whose order depends on the CPU's vector width, so its sum can
// differ from the correctly rounded one by an ulp or so for long inputs.
// Such a difference moves nested_offset by an ulp and flips an 8-bit code
// only when a scale sits on a decision midpoint; it cannot be settled from
// stored checkpoints, which keep only the quantized scales.
func meanF32(xs []float32) float32 {
	var s float64
	for _, x := range xs {
		s += float64(x)
	}
	return float32(float32(s) / float32(len(xs)))
}

// Dequantize decodes w to its dense row-major [out, in] values, rounded to
// w.State.DType and widened back to float32. It panics if w fails Validate.
func Dequantize(w *NF4Weight) []float32 {
	dst := make([]float32, w.State.NumElements())
	if err := DequantizeTo(dst, w); err != nil {
		panic(err)
	}
	return dst
}

// DequantizeTo decodes w into dst, which must hold out·in values.
func DequantizeTo(dst []float32, w *NF4Weight) error {
	if err := w.Validate(); err != nil {
		return err
	}
	s := &w.State
	if n := s.NumElements(); len(dst) != n {
		return fmt.Errorf("quant: DequantizeTo: shape %v needs dst of %d values, got %d", s.Shape, n, len(dst))
	}
	absmax := w.Absmax()
	for k := range dst {
		// float32(...) around the product forbids fusing it with anything.
		v := float32(s.Code[nibble(w.Packed, k)] * absmax[k/s.Blocksize])
		dst[k] = dtype.Round(s.DType, v)
	}
	return nil
}
