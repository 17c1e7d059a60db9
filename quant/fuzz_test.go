package quant

import (
	"testing"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/safetensors"
)

// FuzzLoadNF4 feeds malformed quant states, packed weights and scales to
// LoadNF4. Nothing may panic, and whatever loads must decode and survive a
// SaveNF4/LoadNF4 round trip unchanged.
func FuzzLoadNF4(f *testing.F) {
	f.Add([]byte(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [3, 5]}`), []byte("\x12\x34\x56\x78\x9a\xbc\xde\xf7"), []byte{0, 0, 128, 63}, false, []byte{}, uint8(0))
	f.Add([]byte(`{"quant_type": "nf4", "blocksize": 32, "dtype": "float16", "shape": [1, 65], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.25}`),
		make([]byte, 33), []byte{1, 200, 255}, true, []byte{0, 0, 128, 62}, uint8(1))
	f.Add([]byte(`{"quant_type": "nf4", "blocksize": 4096, "dtype": "float32", "shape": [1, 1]}`), []byte{0x70}, []byte{0, 0, 192, 127}, false, []byte{}, uint8(2))
	f.Add([]byte(`{"quant_type": "fp4", "blocksize": 64, "dtype": "float32", "shape": [-1, 2]}`), []byte{}, []byte{}, true, []byte{}, uint8(3))
	f.Fuzz(func(t *testing.T, qs, packed, absmax []byte, nested bool, nestedAbsmax []byte, mapEdit uint8) {
		file := safetensors.New()
		u8 := func(name string, b []byte) { _ = file.Put(name, "U8", []int{len(b)}, b) }
		f32 := func(name string, b []byte) { _ = file.Put(name, "F32", []int{len(b) / 4}, b[:len(b)/4*4]) }
		u8("p"+keyQuantState, qs)
		_ = file.Put("p"+keyWeight, "U8", []int{len(packed), 1}, packed)
		code := NF4Table
		dm := DynamicMap()
		switch mapEdit % 4 { // occasionally a bad or short map
		case 1:
			code[mapEdit%16] = float32(mapEdit) / 0
		case 2:
			dm[mapEdit] = -dm[mapEdit]
		}
		mapBytes := dtype.Encode(dtype.F32, code[:])
		if mapEdit%4 == 3 {
			mapBytes = mapBytes[:60]
		}
		f32("p"+keyQuantMap, mapBytes)
		if nested {
			u8("p"+keyAbsmax, absmax)
			f32("p"+keyNestedAbsmax, nestedAbsmax)
			f32("p"+keyNestedMap, dtype.Encode(dtype.F32, dm[:]))
		} else {
			f32("p"+keyAbsmax, absmax)
		}
		w, err := LoadNF4(file, "p")
		if err != nil {
			return
		}
		if w.State.NumElements() > 1<<22 {
			return // valid but too big to decode quickly
		}
		dense := Dequantize(w)
		if len(dense) != w.State.NumElements() {
			t.Fatalf("decoded %d values for shape %v", len(dense), w.State.Shape)
		}
		out := safetensors.New()
		if err := SaveNF4(out, "p", w); err != nil {
			t.Fatalf("loaded weight does not save: %v", err)
		}
		again, err := LoadNF4(out, "p")
		if err != nil {
			t.Fatalf("saved weight does not load: %v", err)
		}
		if string(again.Packed) != string(w.Packed) || again.State.Shape != w.State.Shape ||
			again.State.Blocksize != w.State.Blocksize || again.State.DType != w.State.DType {
			t.Fatalf("round trip changed the weight")
		}
	})
}
