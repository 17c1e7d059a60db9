// coop_stage.glsl: staging 16-bit or NF4 B tiles in shared memory, 8
// elements (one uvec4) at a time, for the cooperative-matrix matmuls.
//
// The including shader declares the push constants (matmul_push.glsl), the
// B buffers (dense: uint16_t b16[] and its uvec4 view b128[]; NF4: uint b[]
// and float qstate[] with nf4.glsl included and ROUND_TYPE = D_TYPE), and
// the constants B_KF (B's k index is contiguous, else its n index) and
// B_COLS (elements in one row of the staged B tile: BK when B_KF, else BN).
#ifndef VKLORA_COOP_STAGE_GLSL
#define VKLORA_COOP_STAGE_GLSL

#include "chunk_word.glsl"

// f32 → the 16-bit pattern of D, rounded to nearest even.
uint to_d_bits(float v) {
#if D_TYPE == TYPE_BF16
	return f32_to_bf16(v);
#else
	return f32_to_f16(v);
#endif
}

uvec4 pack8(uint e[8]) {
	return uvec4(e[0] | (e[1] << 16), e[2] | (e[3] << 16), e[4] | (e[5] << 16), e[6] | (e[7] << 16));
}

// A chunk is 8 elements along an operand's contiguous index: g is the
// element index of its first element, n how many of the 8 are in range (0
// when its row or column is out of range).
uvec4 load_b_chunk(uint g, uint n) {
#if B_TYPE == TYPE_NF4
	uint e[8];
	if (n == 8u && (g & 7u) == 0u) {
		// One word, one block (block sizes are multiples of 8): one scale
		// load and no division per element. Rounding the product straight
		// to D gives the bits nf4_value's rounded value has.
		uint w = b[g >> 3];
		float absmax = qstate[16u + g / pc.blocksize];
		[[unroll]] for (uint i = 0; i < 8; i++) e[i] = to_d_bits(nf4_scaled(w, i, absmax));
	} else {
		[[unroll]] for (uint i = 0; i < 8; i++) e[i] = i < n ? to_d_bits(nf4_value(b[(g + i) >> 3], g + i, pc.blocksize)) : 0u;
	}
	return pack8(e);
#else
	if (n == 8u && (g & 7u) == 0u) {
		return b128[g >> 3];
	}
	uint e[8];
	[[unroll]] for (uint i = 0; i < 8; i++) e[i] = i < n ? uint(b16[g + i]) : 0u;
	return pack8(e);
#endif
}

uint valid8(uint start, uint end) { return start >= end ? 0u : min(8u, end - start); }

// Chunk c of the B tile at (n0, k0): its element index and valid count.
void b_chunk(uint c, uint n0, uint k0, uint kend, out uint g, out uint n) {
	uint row = c / (B_COLS / 8), col = (c % (B_COLS / 8)) * 8;
	if (B_KF) {
		uint nn = n0 + row, k = k0 + col;
		g = k + nn * pc.b_cs;
		n = nn < pc.N ? valid8(k, kend) : 0u;
	} else {
		uint nn = n0 + col, k = k0 + row;
		g = k * pc.b_rs + nn;
		n = k < kend ? valid8(nn, pc.N) : 0u;
	}
}

#endif
