package quant

import (
	"fmt"
	"math"

	"github.com/vklora/vklora/dtype"
)

// Block sizes bitsandbytes accepts for NF4: powers of two in this range.
const (
	MinBlocksize     = 32
	MaxBlocksize     = 4096
	DefaultBlocksize = 64
	// NestedBlocksize is the block of 256 scales that double quantization
	// uses (bitsandbytes hard-codes it).
	NestedBlocksize = 256
)

// maxElements bounds out·in so that index arithmetic cannot overflow and a
// corrupt checkpoint cannot ask for an absurd allocation on decode.
const maxElements = 1 << 40

// QuantState mirrors bitsandbytes' QuantState for one NF4 weight.
type QuantState struct {
	QuantType string      // "nf4", the only type supported
	Blocksize int         // elements per scale: a power of two in [32, 4096]
	DType     dtype.DType // type of the dequantized weight (F32, F16 or BF16)
	Shape     [2]int      // [out, in] of the dense weight
	Code      [16]float32 // the quant_map; NF4Table in every known checkpoint
	// Absmax holds the float32 per-block scales when Nested is nil; it is
	// empty otherwise.
	Absmax []float32
	// Nested holds the double-quantized scales; nil for plain NF4.
	Nested *NestedState
}

// NestedState is the 8-bit quantization of the NF4 scales (bitsandbytes'
// state2 plus offset).
type NestedState struct {
	QAbsmax   []uint8      // one code per NF4 block, indexes Code
	Absmax    []float32    // one scale per Blocksize codes
	Code      [256]float32 // the signed dynamic map (DynamicMap)
	Blocksize int          // codes per nested scale, 256 in practice
	Offset    float32      // mean of the original scales, added back on decode
}

// NF4Weight is a packed NF4 weight and its quantization state.
type NF4Weight struct {
	Packed []byte // (n+1)/2 bytes, even element in the high nibble
	State  QuantState
}

// NumElements is out·in.
func (s *QuantState) NumElements() int { return s.Shape[0] * s.Shape[1] }

// NumBlocks is the number of NF4 scales, ceil(out·in / Blocksize).
func (s *QuantState) NumBlocks() int { return ceilDiv(s.NumElements(), s.Blocksize) }

// StandardCode reports whether Code is exactly NF4Table, which kernels that
// hard-code the table rely on.
func (s *QuantState) StandardCode() bool { return s.Code == NF4Table }

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func validBlocksize(bs int) bool {
	return bs >= MinBlocksize && bs <= MaxBlocksize && bs&(bs-1) == 0
}

func finite(x float32) bool { return !math.IsNaN(float64(x)) && !math.IsInf(float64(x), 0) }

// firstBad returns the index of the first non-finite or negative value, or -1.
func firstBad(xs []float32, allowNegative bool) int {
	for i, x := range xs {
		if !finite(x) || (!allowNegative && x < 0) {
			return i
		}
	}
	return -1
}

// checkLayout checks the fields that fix sizes (type, blocksize, dtype,
// shape), so that loaders can size-check tensors before reading them.
func (s *QuantState) checkLayout() error {
	if s.QuantType != "nf4" {
		return fmt.Errorf("quant: quant type %q not supported (want nf4)", s.QuantType)
	}
	if !validBlocksize(s.Blocksize) {
		return fmt.Errorf("quant: blocksize %d is not a power of two in [%d, %d]", s.Blocksize, MinBlocksize, MaxBlocksize)
	}
	if !s.DType.IsFloat() {
		return fmt.Errorf("quant: dtype %v is not a float type", s.DType)
	}
	out, in := s.Shape[0], s.Shape[1]
	if out <= 0 || in <= 0 || out > maxElements/in {
		return fmt.Errorf("quant: shape %v must be positive with at most %d elements", s.Shape, maxElements)
	}
	if s.Nested != nil && !validBlocksize(s.Nested.Blocksize) {
		return fmt.Errorf("quant: nested blocksize %d is not a power of two in [%d, %d]", s.Nested.Blocksize, MinBlocksize, MaxBlocksize)
	}
	return nil
}

// Validate checks that the state and packed bytes are consistent, so that
// decoding cannot index out of range or produce NaN from a bad scale.
func (w *NF4Weight) Validate() error {
	s := &w.State
	if err := s.checkLayout(); err != nil {
		return err
	}
	n := s.NumElements()
	if want := (n + 1) / 2; len(w.Packed) != want {
		return fmt.Errorf("quant: shape %v needs %d packed bytes, got %d", s.Shape, want, len(w.Packed))
	}
	if i := firstBad(s.Code[:], true); i >= 0 {
		return fmt.Errorf("quant: quant_map[%d] = %v is not finite", i, s.Code[i])
	}
	nb := s.NumBlocks()
	if s.Nested == nil {
		if len(s.Absmax) != nb {
			return fmt.Errorf("quant: shape %v with blocksize %d needs %d absmax values, got %d", s.Shape, s.Blocksize, nb, len(s.Absmax))
		}
		if i := firstBad(s.Absmax, false); i >= 0 {
			return fmt.Errorf("quant: absmax[%d] = %v is not finite and non-negative", i, s.Absmax[i])
		}
		return checkProducts(s.Code[:], s.Absmax)
	}
	if err := s.Nested.validate(nb, len(s.Absmax)); err != nil {
		return err
	}
	ns := s.Nested
	a := make([]float32, len(ns.QAbsmax))
	for b, q := range ns.QAbsmax {
		a[b] = float32(float32(ns.Code[q]*ns.Absmax[b/ns.Blocksize]) + ns.Offset)
		if !finite(a[b]) {
			return fmt.Errorf("quant: decoded absmax[%d] = %v (nested code %v · nested_absmax %v + offset %v) is not finite",
				b, a[b], ns.Code[q], ns.Absmax[b/ns.Blocksize], ns.Offset)
		}
	}
	return checkProducts(s.Code[:], a)
}

// checkProducts refuses scales whose product with a code overflows
// float32: each factor can be finite while code·absmax is Inf.
func checkProducts(code, absmax []float32) error {
	var c, a float32
	for _, v := range code {
		c = max(c, float32(math.Abs(float64(v))))
	}
	for _, v := range absmax {
		a = max(a, float32(math.Abs(float64(v))))
	}
	if p := c * a; !finite(p) {
		return fmt.Errorf("quant: the largest code %v times the largest absmax %v is %v, not finite", c, a, p)
	}
	return nil
}

func (ns *NestedState) validate(nb, plainAbsmax int) error {
	if plainAbsmax != 0 {
		return fmt.Errorf("quant: nested state with %d float32 absmax values (want none)", plainAbsmax)
	}
	if len(ns.QAbsmax) != nb {
		return fmt.Errorf("quant: %d NF4 blocks need %d 8-bit absmax codes, got %d", nb, nb, len(ns.QAbsmax))
	}
	if want := ceilDiv(nb, ns.Blocksize); len(ns.Absmax) != want {
		return fmt.Errorf("quant: %d absmax codes with nested blocksize %d need %d nested_absmax values, got %d",
			nb, ns.Blocksize, want, len(ns.Absmax))
	}
	if i := firstBad(ns.Absmax, false); i >= 0 {
		return fmt.Errorf("quant: nested_absmax[%d] = %v is not finite and non-negative", i, ns.Absmax[i])
	}
	if i := firstBad(ns.Code[:], true); i >= 0 {
		return fmt.Errorf("quant: nested_quant_map[%d] = %v is not finite", i, ns.Code[i])
	}
	if !finite(ns.Offset) {
		return fmt.Errorf("quant: nested_offset %v is not finite", ns.Offset)
	}
	return nil
}

// Absmax returns the per-block float32 scales, decoding the nested state
// when there is one. It panics if w fails Validate.
func (w *NF4Weight) Absmax() []float32 {
	mustValid(w)
	s := &w.State
	if s.Nested == nil {
		return append([]float32(nil), s.Absmax...)
	}
	ns := s.Nested
	a := make([]float32, len(ns.QAbsmax))
	for b, q := range ns.QAbsmax {
		// Two separately rounded float32 operations, as bitsandbytes'
		// dequantize_blockwise followed by "absmax += offset".
		p := float32(ns.Code[q] * ns.Absmax[b/ns.Blocksize])
		a[b] = float32(p + ns.Offset)
	}
	return a
}

// Codes unpacks the out·in 4-bit codes, one per byte.
func (w *NF4Weight) Codes() []uint8 {
	mustValid(w)
	n := w.State.NumElements()
	c := make([]uint8, n)
	for k := range c {
		c[k] = nibble(w.Packed, k)
	}
	return c
}

// nibble is code k: the high nibble of byte k/2 for even k, the low for odd.
func nibble(packed []byte, k int) uint8 {
	b := packed[k>>1]
	if k&1 == 0 {
		return b >> 4
	}
	return b & 15
}

func mustValid(w *NF4Weight) {
	if err := w.Validate(); err != nil {
		panic(err)
	}
}
