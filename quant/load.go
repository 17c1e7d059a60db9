package quant

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/safetensors"
)

// Checkpoint key suffixes after the Linear's prefix (transformers layout).
const (
	keyWeight       = ".weight"
	keyAbsmax       = ".weight.absmax"
	keyQuantMap     = ".weight.quant_map"
	keyNestedAbsmax = ".weight.nested_absmax"
	keyNestedMap    = ".weight.nested_quant_map"
	keyQuantState   = ".weight.quant_state.bitsandbytes__nf4"
	keyFP4State     = ".weight.quant_state.bitsandbytes__fp4"
)

// quantStateJSON is the packed quant_state; pointers tell missing from zero.
// Unknown fields are ignored so newer writers still load.
type quantStateJSON struct {
	QuantType       *string  `json:"quant_type"`
	Blocksize       *int     `json:"blocksize"`
	DType           *string  `json:"dtype"`
	Shape           []int    `json:"shape"`
	NestedBlocksize *int     `json:"nested_blocksize"`
	NestedDType     *string  `json:"nested_dtype"`
	NestedOffset    *float64 `json:"nested_offset"`
}

// bnbDTypeName is the name bitsandbytes writes: str(torch dtype) without "torch.".
var bnbDTypeName = map[dtype.DType]string{dtype.F32: "float32", dtype.F16: "float16", dtype.BF16: "bfloat16"}

// IsNF4 reports whether f holds an NF4 quant state under prefix.
func IsNF4(f *safetensors.File, prefix string) bool {
	_, ok := f.Tensors[prefix+keyQuantState]
	return ok
}

// LoadNF4 reads the NF4 weight of the Linear at prefix (e.g.
// "model.layers.0.mlp.up_proj" or, in conformance files, "q") from f. The
// blocksize, dtype and shape come from the quant_state JSON, never from
// defaults, and every tensor is checked against them.
func LoadNF4(f *safetensors.File, prefix string) (*NF4Weight, error) {
	if _, ok := f.Tensors[prefix+keyFP4State]; ok {
		return nil, fmt.Errorf("quant: %s: 4-bit FP4 is not supported, only NF4", prefix+keyFP4State)
	}
	qsBytes, _, err := f.Uint8(prefix + keyQuantState)
	if err != nil {
		return nil, fmt.Errorf("quant: loading NF4 %q: %w", prefix, err)
	}
	qs, err := parseQuantState(qsBytes, prefix+keyQuantState)
	if err != nil {
		return nil, err
	}
	if err := qs.checkLayout(); err != nil {
		return nil, fmt.Errorf("%s: %w", prefix+keyQuantState, err)
	}
	w := &NF4Weight{State: qs}
	if w.Packed, err = loadPacked(f, prefix, qs); err != nil {
		return nil, err
	}
	if err := loadCode(f, prefix+keyQuantMap, w.State.Code[:]); err != nil {
		return nil, err
	}
	if w.State.Nested == nil {
		err = loadPlainAbsmax(f, prefix, &w.State)
	} else {
		err = loadNestedAbsmax(f, prefix, &w.State)
	}
	if err != nil {
		return nil, err
	}
	if err := w.Validate(); err != nil {
		return nil, fmt.Errorf("quant: loading NF4 %q: %w", prefix, err)
	}
	return w, nil
}

// parseQuantState decodes and checks the JSON; the nested part is present
// exactly when nested_offset is, as in bitsandbytes' QuantState.from_dict.
func parseQuantState(b []byte, key string) (QuantState, error) {
	var j quantStateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return QuantState{}, fmt.Errorf("quant: %s: %w", key, err)
	}
	if j.QuantType == nil || j.Blocksize == nil || j.DType == nil || j.Shape == nil {
		return QuantState{}, fmt.Errorf("quant: %s: needs quant_type, blocksize, dtype and shape: %s", key, b)
	}
	if *j.QuantType != "nf4" {
		return QuantState{}, fmt.Errorf("quant: %s: quant_type %q not supported (want nf4)", key, *j.QuantType)
	}
	d, err := dtype.Parse(*j.DType)
	if err != nil || !d.IsFloat() {
		return QuantState{}, fmt.Errorf("quant: %s: dtype %q is not float32, float16 or bfloat16", key, *j.DType)
	}
	if len(j.Shape) != 2 {
		return QuantState{}, fmt.Errorf("quant: %s: shape %v is not [out, in]", key, j.Shape)
	}
	qs := QuantState{QuantType: "nf4", Blocksize: *j.Blocksize, DType: d, Shape: [2]int{j.Shape[0], j.Shape[1]}}
	if j.NestedOffset == nil {
		if j.NestedBlocksize != nil || j.NestedDType != nil {
			return QuantState{}, fmt.Errorf("quant: %s: nested_blocksize or nested_dtype without nested_offset", key)
		}
		return qs, nil
	}
	if j.NestedBlocksize == nil {
		return QuantState{}, fmt.Errorf("quant: %s: nested_offset without nested_blocksize", key)
	}
	// bitsandbytes decodes nested scales in float32 whatever this says, but
	// a different value would mean a writer we do not know.
	if j.NestedDType != nil && *j.NestedDType != "float32" {
		return QuantState{}, fmt.Errorf("quant: %s: nested_dtype %q not supported (want float32)", key, *j.NestedDType)
	}
	qs.Nested = &NestedState{Blocksize: *j.NestedBlocksize, Offset: float32(*j.NestedOffset)}
	return qs, nil
}

func loadPacked(f *safetensors.File, prefix string, qs QuantState) ([]byte, error) {
	key := prefix + keyWeight
	packed, shape, err := f.Uint8(key)
	if err != nil {
		return nil, fmt.Errorf("quant: loading NF4 %q: %w", prefix, err)
	}
	// bitsandbytes stores [(n+1)/2, 1]; any layout of the right count is accepted.
	if n := qs.NumElements(); len(packed) != (n+1)/2 {
		return nil, fmt.Errorf("quant: %s: shape %v in the quant state needs %d packed bytes, tensor has shape %v (%d bytes)",
			key, qs.Shape, (qs.NumElements()+1)/2, shape, len(packed))
	}
	return packed, nil
}

// loadFloats reads a float tensor of exactly want elements.
func loadFloats(f *safetensors.File, key string, want int) ([]float32, error) {
	xs, shape, err := f.Float32(key)
	if err != nil {
		return nil, fmt.Errorf("quant: %w", err)
	}
	if len(xs) != want {
		return nil, fmt.Errorf("quant: %s: want %d values, tensor has shape %v", key, want, shape)
	}
	return xs, nil
}

func loadCode(f *safetensors.File, key string, dst []float32) error {
	xs, err := loadFloats(f, key, len(dst))
	if err != nil {
		return err
	}
	copy(dst, xs)
	return nil
}

func loadPlainAbsmax(f *safetensors.File, prefix string, s *QuantState) error {
	for _, k := range []string{keyNestedAbsmax, keyNestedMap} {
		if _, ok := f.Tensors[prefix+k]; ok {
			return fmt.Errorf("quant: %s present but the quant state has no nested_offset", prefix+k)
		}
	}
	var err error
	s.Absmax, err = loadFloats(f, prefix+keyAbsmax, s.NumBlocks())
	return err
}

func loadNestedAbsmax(f *safetensors.File, prefix string, s *QuantState) error {
	ns := s.Nested
	if err := loadCode(f, prefix+keyNestedMap, ns.Code[:]); err != nil {
		return err
	}
	q, shape, err := f.Uint8(prefix + keyAbsmax)
	if err != nil {
		return fmt.Errorf("quant: nested state: %w", err)
	}
	ns.QAbsmax = q
	if nb := s.NumBlocks(); len(q) != nb {
		return fmt.Errorf("quant: %s: shape %v with blocksize %d needs %d codes, tensor has shape %v",
			prefix+keyAbsmax, s.Shape, s.Blocksize, nb, shape)
	}
	ns.Absmax, err = loadFloats(f, prefix+keyNestedAbsmax, ceilDiv(len(q), ns.Blocksize))
	return err
}

// SaveNF4 stores w in f under prefix with the keys LoadNF4 reads, in the
// layout and dtypes bitsandbytes writes. The quant_state JSON is formatted
// as Python's json.dumps, so a loaded checkpoint saves back byte for byte.
func SaveNF4(f *safetensors.File, prefix string, w *NF4Weight) error {
	if err := w.Validate(); err != nil {
		return fmt.Errorf("quant: saving NF4 %q: %w", prefix, err)
	}
	s := &w.State
	put := func(suffix, dt string, shape []int, data []byte) error {
		return f.Put(prefix+suffix, dt, shape, data)
	}
	puts := []error{
		put(keyWeight, "U8", []int{len(w.Packed), 1}, append([]byte(nil), w.Packed...)),
		put(keyQuantMap, "F32", []int{16}, dtype.Encode(dtype.F32, s.Code[:])),
	}
	if s.Nested == nil {
		puts = append(puts, put(keyAbsmax, "F32", []int{len(s.Absmax)}, dtype.Encode(dtype.F32, s.Absmax)))
	} else {
		ns := s.Nested
		puts = append(puts,
			put(keyAbsmax, "U8", []int{len(ns.QAbsmax)}, append([]byte(nil), ns.QAbsmax...)),
			put(keyNestedAbsmax, "F32", []int{len(ns.Absmax)}, dtype.Encode(dtype.F32, ns.Absmax)),
			put(keyNestedMap, "F32", []int{256}, dtype.Encode(dtype.F32, ns.Code[:])))
	}
	js := quantStateBytes(s)
	puts = append(puts, put(keyQuantState, "U8", []int{len(js)}, js))
	for _, err := range puts {
		if err != nil {
			return err
		}
	}
	return nil
}

// quantStateBytes writes the JSON with Python json.dumps' separators and key
// order, as transformers' pack_dict_to_tensor does.
func quantStateBytes(s *QuantState) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"quant_type": %q, "blocksize": %d, "dtype": %q, "shape": [%d, %d]`,
		s.QuantType, s.Blocksize, bnbDTypeName[s.DType], s.Shape[0], s.Shape[1])
	if s.Nested != nil {
		fmt.Fprintf(&b, `, "nested_blocksize": %d, "nested_dtype": "float32", "nested_offset": %s`,
			s.Nested.Blocksize, pyFloatRepr(float64(s.Nested.Offset)))
	}
	b.WriteByte('}')
	return b.Bytes()
}

// pyFloatRepr formats f as Python's repr: the shortest round-trip digits,
// positional for exponents in [-4, 16) with at least one decimal ("2.0"),
// scientific otherwise with a two-digit exponent ("1e-05").
func pyFloatRepr(f float64) string {
	e := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if exp < -4 || exp >= 16 {
		return e
	}
	p := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(p, ".") {
		p += ".0"
	}
	return p
}
