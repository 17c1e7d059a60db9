// chunk_word.glsl: where a staged chunk (one uvec4, 8 elements) lands in a
// shared tile whose rows are padded (matmul_coopmat, matmul_cm2, peak_tile).
#ifndef VKLORA_CHUNK_WORD_GLSL
#define VKLORA_CHUNK_WORD_GLSL

// Shared-memory word of chunk c in a tile whose rows hold cols8 chunks.
uint chunk_word(uint c, uint cols8, uint stride) { return (c / cols8) * stride + c % cols8; }

#endif
