// nf4.glsl: decoding bitsandbytes NF4 weights.
//
// Packed layout: byte j holds element 2j in its high nibble and 2j+1 in its
// low nibble; bytes are read four to a uint (little-endian). The state
// buffer holds the 16-entry code map, then one f32 absmax per block (double
// quantization is decoded once when the weight is uploaded).
// w = f32(code[nibble] · absmax[i / blocksize]), rounded to ROUND_TYPE.
#ifndef VKLORA_NF4_GLSL
#define VKLORA_NF4_GLSL

float nf4_round(float w) {
#if defined(ROUND_TYPE) && ROUND_TYPE == TYPE_BF16
	return bf16_to_f32(f32_to_bf16(w));
#elif defined(ROUND_TYPE) && ROUND_TYPE == TYPE_F16
	return f16_to_f32(f32_to_f16(w));
#else
	return w;
#endif
}

// The including shader declares the state buffer as `float qstate[]`.
// code[nibble j of word]·absmax, unrounded; j in 0..7 is the element's
// index within its word.
float nf4_scaled(uint word, uint j, float absmax) {
	uint byte_ = (word >> ((j >> 1u) * 8u)) & 0xffu;
	uint code = (j & 1u) == 0u ? (byte_ >> 4u) : (byte_ & 15u);
	precise float w = qstate[code] * absmax;
	return w;
}

// word is the uint holding element i (word index i >> 3).
float nf4_value(uint word, uint i, uint blocksize) {
	return nf4_round(nf4_scaled(word, i & 7u, qstate[16u + i / blocksize]));
}

#endif
