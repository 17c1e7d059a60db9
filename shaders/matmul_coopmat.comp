#version 450
// matmul_coopmat: C = alpha·A·B + alpha2·A2·B2 + beta·C on cooperative
// matrices (VK_KHR_cooperative_matrix, subgroup scope), 16-bit inputs and
// fp32 accumulation. Same push constants, bindings and dispatch as
// matmul.comp, so the Go side picks either kernel for one gemm.
//
// Defines: D_TYPE (TYPE_F16 or TYPE_BF16: A and dense B storage, and the
// type the fused term's operands are rounded to), B_TYPE (D_TYPE or
// TYPE_NF4), C_TYPE. The cooperative matrices are declared float16_t; the
// bf16 variants are compiled from the same source and then retyped to
// bfloat16 by the generator (glslang 15.1 has no bfloat16_t), which checks
// that the 16-bit float type is used by nothing but cooperative matrices.
// Tiles are therefore staged as raw 16-bit words and never converted.
//
// FM and FN (defines, 1, 2 or 4 each) are the fragments of one subgroup's
// tile: FM×FN accumulators of TM×TN. They are compile-time, and every
// fragment and accumulator is a separately named variable (acc00, acc01,
// ..., fa0, fb0, ... through the FOR_* macros), never an array: arrays of
// cooperative matrices indexed by loop variables were placed in local
// memory by a driver (its pipeline statistics showed 32 bytes of local
// memory per accumulator), which cost more than half the throughput.
//
// Specialization constants: 0 BM, 1 BN, 2 BK (workgroup tile), 3 WM, 4 WN
// (subgroup tile: FM·TM × FN·TN), 5 workgroup size = (BM/WM)·(BN/WN)·
// subgroup size, 6 TM, 7 TN, 8 TK (cooperative matrix shape), 9 A_KF (A's k
// index is contiguous, else its m index), 10 B_KF (B's k index is
// contiguous, else its n index), 11 TWO_BUFS and 12 PREFETCH (below). The layouts are constants so that the
// driver compiles each multiply loop without branches between
// cooperative-matrix operations.
//
// Each operand tile is staged in shared memory in the operand's own memory
// order (the contiguous index innermost), in chunks of 8 elements (one
// uvec4), and coopMatLoad reads it row- or column-major to match, so X·Wᵀ,
// G·W and Gᵀ·X all copy contiguous memory. Two shared buffers let the next
// tile's global loads overlap the current tile's multiplies.
#extension GL_EXT_control_flow_attributes : enable
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#include "types.glsl"
#include "matmul_push.glsl"

layout(constant_id = 0) const uint BM = 128;
layout(constant_id = 1) const uint BN = 128;
layout(constant_id = 2) const uint BK = 32;
layout(constant_id = 3) const uint WM = 64;
layout(constant_id = 4) const uint WN = 32;
layout(local_size_x_id = 5, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 6) const uint TM = 16;
layout(constant_id = 7) const uint TN = 16;
layout(constant_id = 8) const uint TK = 16;
layout(constant_id = 9) const bool A_KF = true;
layout(constant_id = 10) const bool B_KF = true;
// 11 TWO_BUFS: two shared tile buffers, so that the next tile is stored
// while the current one is read (one barrier per K step); false for one
// buffer (two barriers per step), where two do not fit in shared memory.
layout(constant_id = 11) const bool TWO_BUFS = true;
// 12 PREFETCH: the next tile's global loads are issued before the current
// tile's multiplies, into registers live across them (latency hidden in
// one workgroup); false issues them after, just before the shared stores
// (fewer registers; other resident workgroups hide the latency).
layout(constant_id = 12) const bool PREFETCH = true;

// Raw 16-bit views of A and B, and 128-bit views for aligned chunks.
layout(set = 0, binding = 0, std430) readonly buffer BufA { uint16_t a16[]; };
layout(set = 0, binding = 0, std430) readonly buffer BufA4 { uvec4 a128[]; };
#if B_TYPE == TYPE_NF4
layout(set = 0, binding = 1, std430) readonly buffer BufB { uint b[]; };
layout(set = 0, binding = 5, std430) readonly buffer BufQ { float qstate[]; };
#define ROUND_TYPE D_TYPE
#include "nf4.glsl"
#else
layout(set = 0, binding = 1, std430) readonly buffer BufB { uint16_t b16[]; };
layout(set = 0, binding = 1, std430) readonly buffer BufB4 { uvec4 b128[]; };
#endif
#if B_TYPE == TYPE_NF4
#define B_WIDE a128 // unused: NF4 B never takes the fast loads
#else
#define B_WIDE b128
#endif
#define C_BINDING 2
#include "out_c.glsl"
layout(set = 0, binding = 3, std430) readonly buffer BufA2 { float a2[]; };
layout(set = 0, binding = 4, std430) readonly buffer BufB2 { uint16_t b2[]; };

#include "coop_tile.glsl"
shared uvec4 sh[(TWO_BUFS ? 2u : 1u) * BUF_WORDS];

#include "coop_stage.glsl"

// The A chunk at element index g with n of its 8 elements in range (see
// load_b_chunk).
uvec4 load_a_chunk(uint g, uint n) {
	if (n == 8u && (g & 7u) == 0u) {
		return a128[g >> 3];
	}
	uint e[8];
	[[unroll]] for (uint i = 0; i < 8; i++) e[i] = i < n ? uint(a16[g + i]) : 0u;
	return pack8(e);
}

// Chunk c of the A tile at (m0, k0): its element index and valid count.
void a_chunk(uint c, uint m0, uint k0, uint kend, out uint g, out uint n) {
	uint row = c / (A_COLS / 8), col = (c % (A_COLS / 8)) * 8;
	if (A_KF) {
		uint m = m0 + row, k = k0 + col;
		g = m * pc.a_rs + k;
		n = m < pc.M ? valid8(k, kend) : 0u;
	} else {
		uint m = m0 + col, k = k0 + row;
		g = m + k * pc.a_cs;
		n = k < kend ? valid8(m, pc.M) : 0u;
	}
}

// The fused term's chunk c: alpha2·A2 rounded to D, and B2 as stored, both
// gathered element by element (rank r is small) in the tiles' layouts.
uvec4 lora_a_chunk(uint c, uint m0, uint j0) {
	uint row = c / (A_COLS / 8), col = (c % (A_COLS / 8)) * 8;
	uint e[8];
	[[unroll]] for (uint i = 0; i < 8; i++) {
		uint m = A_KF ? m0 + row : m0 + col + i, j = A_KF ? j0 + col + i : j0 + row;
		e[i] = (m < pc.M && j < pc.K2) ? to_d_bits(pc.alpha2 * a2[m * pc.a2_rs + j * pc.a2_cs]) : 0u;
	}
	return pack8(e);
}

uvec4 lora_b_chunk(uint c, uint n0, uint j0) {
	uint row = c / (B_COLS / 8), col = (c % (B_COLS / 8)) * 8;
	uint e[8];
	[[unroll]] for (uint i = 0; i < 8; i++) {
		uint n = B_KF ? n0 + row : n0 + col + i, j = B_KF ? j0 + col + i : j0 + row;
		e[i] = (n < pc.N && j < pc.K2) ? uint(b2[pc.b2_off + j * pc.b2_rs + n * pc.b2_cs]) : 0u;
	}
	return pack8(e);
}

void main() {
	const uint tid = gl_LocalInvocationID.x;
	const uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID, sgsize = gl_SubgroupSize;
	const uint wm0 = (sg / (BN / WN)) * WM, wn0 = (sg % (BN / WN)) * WN;
	const uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
	const uint kbeg = gl_WorkGroupID.z * pc.k_split;
	const uint kend = min(pc.K, kbeg + pc.k_split);

	FOR_ALL(DECL_ACC)
	FOR_I(DECL_FA)
	FOR_J(DECL_FB)
	uvec4 ra[A_PER_THREAD], rb[B_PER_THREAD];

#define GLOBAL_LOAD(k0)                                                                       \
	[[unroll]] for (uint i = 0; i < A_PER_THREAD; i++) {                                      \
		uint g, n;                                                                            \
		a_chunk(tid + i * WG, m0, (k0), kend, g, n);                                          \
		ra[i] = (n == 0u || !A_IN(tid + i * WG)) ? uvec4(0) : load_a_chunk(g, n);             \
	}                                                                                         \
	[[unroll]] for (uint i = 0; i < B_PER_THREAD; i++) {                                      \
		uint g, n;                                                                            \
		b_chunk(tid + i * WG, n0, (k0), kend, g, n);                                          \
		rb[i] = (n == 0u || !B_IN(tid + i * WG)) ? uvec4(0) : load_b_chunk(g, n);             \
	}

	// Whole K steps of a tile wholly in range with 16-byte aligned rows load
	// every chunk as one uvec4 with no range checks: one uniform branch per
	// step instead of a check and a fallback path per chunk. The others,
	// and a last partial step, take GLOBAL_LOAD.
	const bool a_fast = m0 + BM <= pc.M && (A_KF ? pc.a_rs : pc.a_cs) % 8u == 0u && kbeg % 8u == 0u;
#if B_TYPE == TYPE_NF4
	const bool b_fast = false;
#else
	const bool b_fast = n0 + BN <= pc.N && (B_KF ? pc.b_cs : pc.b_rs) % 8u == 0u;
#endif
	const bool fast = a_fast && b_fast;
#define GLOBAL_LOAD_FAST(k0)                                                                  \
	[[unroll]] for (uint i = 0; i < A_PER_THREAD; i++) {                                      \
		const uint c = tid + i * WG, row = c / (A_COLS / 8), col = (c % (A_COLS / 8)) * 8;    \
		if (A_IN(c))                                                                          \
			ra[i] = a128[(A_KF ? (m0 + row) * pc.a_rs + (k0) + col : m0 + col + ((k0) + row) * pc.a_cs) >> 3]; \
	}                                                                                         \
	[[unroll]] for (uint i = 0; i < B_PER_THREAD; i++) {                                      \
		const uint c = tid + i * WG, row = c / (B_COLS / 8), col = (c % (B_COLS / 8)) * 8;    \
		if (B_IN(c))                                                                          \
			rb[i] = B_WIDE[(B_KF ? (n0 + row) * pc.b_cs + (k0) + col : n0 + col + ((k0) + row) * pc.b_rs) >> 3]; \
	}
#define LOAD_STEP(k0)                                                                         \
	if (fast && (k0) + BK <= kend) {                                                          \
		GLOBAL_LOAD_FAST(k0)                                                                  \
	} else {                                                                                  \
		GLOBAL_LOAD(k0)                                                                       \
	}

	uint buf = 0;
	if (kbeg < kend) {
		LOAD_STEP(kbeg)
		SHARED_STORE(0)
		barrier();
	}
	for (uint k0 = kbeg; k0 < kend; k0 += BK) {
		const bool more = k0 + BK < kend;
		if (more && PREFETCH) {
			LOAD_STEP(k0 + BK)
		}
		TILE_MMA(buf)
		if (TWO_BUFS) {
			if (more) {
				if (!PREFETCH) {
					LOAD_STEP(k0 + BK)
				}
				SHARED_STORE(BUF_WORDS - buf)
			}
			barrier();
			buf = BUF_WORDS - buf;
		} else {
			barrier();
			if (more) {
				if (!PREFETCH) {
					LOAD_STEP(k0 + BK)
				}
				SHARED_STORE(0)
			}
			barrier();
		}
	}

	if (pc.alpha != 1.0) {
		FOR_ALL(SCALE)
	}

	// The fused LoRA term: only the first z-slice adds it.
	if (gl_WorkGroupID.z == 0u) {
		for (uint j0 = 0; j0 < pc.K2; j0 += BK) {
			[[unroll]] for (uint i = 0; i < A_PER_THREAD; i++)
				if (A_IN(tid + i * WG))
					sh[chunk_word(tid + i * WG, A_COLS / 8, A_STRIDE)] = lora_a_chunk(tid + i * WG, m0, j0);
			[[unroll]] for (uint i = 0; i < B_PER_THREAD; i++)
				if (B_IN(tid + i * WG))
					sh[A_WORDS + chunk_word(tid + i * WG, B_COLS / 8, B_STRIDE)] = lora_b_chunk(tid + i * WG, n0, j0);
			barrier();
			TILE_MMA(0)
			barrier();
		}
	}

	// Epilogue: each subgroup stores one accumulator at a time to its own
	// TM×TN f32 scratch (reusing the tile memory), then its lanes apply beta,
	// round and write the in-range elements.
	const uint scratch = sg * (TM * TN / 4);
	const uint cbase = pc.c_off + gl_WorkGroupID.z * pc.M * pc.c_rs;
#define STORE_ACC(i, j)                                                                       \
	coopMatStore(acc##i##j, sh, scratch, TN / 4, gl_CooperativeMatrixLayoutRowMajor);         \
	subgroupMemoryBarrierShared();                                                            \
	subgroupBarrier();                                                                        \
	for (uint e = lane; e < TM * TN; e += sgsize) {                                           \
		uint m = m0 + wm0 + i * TM + e / TN, n = n0 + wn0 + j * TN + e % TN;                  \
		if (m < pc.M && n < pc.N) {                                                           \
			float v = uintBitsToFloat(sh[scratch + e / 4][e % 4]);                            \
			uint idx = cbase + m * pc.c_rs + n;                                               \
			if (pc.beta != 0.0) v += pc.beta * loadC(idx);                                    \
			storeC(idx, v);                                                                   \
		}                                                                                     \
	}                                                                                         \
	subgroupMemoryBarrierShared();                                                            \
	subgroupBarrier();
	FOR_ALL(STORE_ACC)
}
