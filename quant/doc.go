// Package quant holds 4-bit NF4 weights in the bitsandbytes / transformers
// layout: the CPU quantizer (bit-for-bit with conformance/gen/make_vectors.py,
// the generator of the conformance vectors), the CPU dequantizer, and
// loading from and saving to safetensors checkpoints. GPU kernels live in
// other files of this package. docs/LORA-MATH.md describes the format.
//
// # Layout
//
// A weight W [out, in] is flattened row-major (k = row·in + col) and cut into
// blocks of Blocksize elements that run across row ends. Block b has a scale
// absmax[b] = max|w|; each element is the 4-bit index of the nearest entry of
// NF4Table to w/absmax[b] (ties to the lower code). Two codes share a byte:
// element 2j in the HIGH nibble, 2j+1 in the low one; odd counts pad the last
// low nibble with the code of 0 (7).
//
// With double quantization (QLoRA's default) the float32 scales are replaced
// by 8-bit codes into a 256-entry signed dynamic map (DynamicMap), scaled per
// block of 256 scales by a float32 nested absmax, after subtracting their
// mean (Offset). See NestedState.
//
// # Decoding
//
//	a[b] = absmax[b]                                             (plain)
//	a[b] = f32(f32(nested.Code[q[b]] · nested.Absmax[b/256]) + Offset)  (nested)
//	W[k] = round_to_DType(f32(Code[code[k]] · a[k/Blocksize]))
//
// Each f32(...) is one float32 operation, rounded to nearest even and never
// fused with its neighbour; the conformance vectors were made that way.
//
// # Errors
//
// QuantizeNF4, LoadNF4 and (*NF4Weight).Validate return errors naming the
// argument or checkpoint key and the shapes involved; Dequantize and Absmax
// panic only on weights that fail Validate (those from QuantizeNF4 and
// LoadNF4 never do).
package quant
