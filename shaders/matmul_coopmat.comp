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
// Specialization constants: 0 BM, 1 BN, 2 BK (workgroup tile), 3 WM, 4 WN
// (subgroup tile), 5 workgroup size = (BM/WM)·(BN/WN)·subgroup size,
// 6 TM, 7 TN, 8 TK (cooperative matrix shape).
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
#define C_BINDING 2
#include "out_c.glsl"
layout(set = 0, binding = 3, std430) readonly buffer BufA2 { float a2[]; };
layout(set = 0, binding = 4, std430) readonly buffer BufB2 { uint16_t b2[]; };

// f32 → the 16-bit pattern of D, rounded to nearest even.
uint to_d_bits(float v) {
#if D_TYPE == TYPE_BF16
	return f32_to_bf16(v);
#else
	return f32_to_f16(v);
#endif
}

// Shared tiles in uvec4 units (8 elements). Rows are padded by one uvec4 so
// that the rows a coopMatLoad reads start in different banks.
const uint A_KF_STRIDE = BK / 8 + 1; // A k-fast: [BM][BK] row-major
const uint A_MF_STRIDE = BM / 8 + 1; // A m-fast: [BK][BM]
const uint B_NF_STRIDE = BN / 8 + 1; // B n-fast: [BK][BN] row-major
const uint B_KF_STRIDE = BK / 8 + 1; // B k-fast: [BN][BK]
const uint A_WORDS = BM * A_KF_STRIDE > BK * A_MF_STRIDE ? BM * A_KF_STRIDE : BK * A_MF_STRIDE;
const uint B_WORDS = BN * B_KF_STRIDE > BK * B_NF_STRIDE ? BN * B_KF_STRIDE : BK * B_NF_STRIDE;
shared uvec4 sh[2 * (A_WORDS + B_WORDS)];

const uint A_CHUNKS = BM * BK / 8, B_CHUNKS = BN * BK / 8;
const uint FM = WM / TM, FN = WN / TN;      // fragments per subgroup tile

// One chunk: 8 elements along an operand's contiguous index. g is the
// element index of its first element, n how many of the 8 are in range
// (0 when its row or column is out of range).
uvec4 pack8(uint e[8]) {
	return uvec4(e[0] | (e[1] << 16), e[2] | (e[3] << 16), e[4] | (e[5] << 16), e[6] | (e[7] << 16));
}

uvec4 load_a_chunk(uint g, uint n) {
	if (n == 8u && (g & 7u) == 0u) {
		return a128[g >> 3];
	}
	uint e[8];
	[[unroll]] for (uint i = 0; i < 8; i++) e[i] = i < n ? uint(a16[g + i]) : 0u;
	return pack8(e);
}

uvec4 load_b_chunk(uint g, uint n) {
#if B_TYPE == TYPE_NF4
	uint e[8];
	if (n == 8u && (g & 7u) == 0u) {
		uint w = b[g >> 3];
		[[unroll]] for (uint i = 0; i < 8; i++) e[i] = to_d_bits(nf4_value(w, g + i, pc.blocksize));
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

// Staging registers: this thread's chunks of the next A and B tiles.
const uint A_PER_THREAD = (A_CHUNKS + gl_WorkGroupSize.x - 1) / gl_WorkGroupSize.x;
const uint B_PER_THREAD = (B_CHUNKS + gl_WorkGroupSize.x - 1) / gl_WorkGroupSize.x;
uvec4 ra[A_PER_THREAD];
uvec4 rb[B_PER_THREAD];

// Clamp a count of valid elements to [0, 8].
uint valid8(uint start, uint end) { return start >= end ? 0u : min(8u, end - start); }

void global_load(uint k0, uint kend, uint m0, uint n0, bool a_kf, bool b_kf, uint wg) {
	const uint tid = gl_LocalInvocationID.x;
	[[unroll]] for (uint i = 0; i < A_PER_THREAD; i++) {
		uint c = tid + i * wg;
		if (c >= A_CHUNKS) break;
		uint g, n;
		if (a_kf) {
			uint mm = c / (BK / 8), kk = (c % (BK / 8)) * 8;
			uint m = m0 + mm, k = k0 + kk;
			g = m * pc.a_rs + k;
			n = m < pc.M ? valid8(k, kend) : 0u;
		} else {
			uint kk = c / (BM / 8), mm = (c % (BM / 8)) * 8;
			uint m = m0 + mm, k = k0 + kk;
			g = m + k * pc.a_cs;
			n = k < kend ? valid8(m, pc.M) : 0u;
		}
		ra[i] = n == 0u ? uvec4(0) : load_a_chunk(g, n);
	}
	[[unroll]] for (uint i = 0; i < B_PER_THREAD; i++) {
		uint c = tid + i * wg;
		if (c >= B_CHUNKS) break;
		uint g, n;
		if (b_kf) {
			uint nn = c / (BK / 8), kk = (c % (BK / 8)) * 8;
			uint col = n0 + nn, k = k0 + kk;
			g = k + col * pc.b_cs;
			n = col < pc.N ? valid8(k, kend) : 0u;
		} else {
			uint kk = c / (BN / 8), nn = (c % (BN / 8)) * 8;
			uint col = n0 + nn, k = k0 + kk;
			g = k * pc.b_rs + col;
			n = k < kend ? valid8(col, pc.N) : 0u;
		}
		rb[i] = n == 0u ? uvec4(0) : load_b_chunk(g, n);
	}
}

void shared_store(uint buf, bool a_kf, bool b_kf, uint wg) {
	const uint tid = gl_LocalInvocationID.x;
	const uint abase = buf * (A_WORDS + B_WORDS), bbase = abase + A_WORDS;
	[[unroll]] for (uint i = 0; i < A_PER_THREAD; i++) {
		uint c = tid + i * wg;
		if (c >= A_CHUNKS) break;
		uint row = a_kf ? c / (BK / 8) : c / (BM / 8);
		uint col = a_kf ? c % (BK / 8) : c % (BM / 8);
		sh[abase + row * (a_kf ? A_KF_STRIDE : A_MF_STRIDE) + col] = ra[i];
	}
	[[unroll]] for (uint i = 0; i < B_PER_THREAD; i++) {
		uint c = tid + i * wg;
		if (c >= B_CHUNKS) break;
		uint row = b_kf ? c / (BK / 8) : c / (BN / 8);
		uint col = b_kf ? c % (BK / 8) : c % (BN / 8);
		sh[bbase + row * (b_kf ? B_KF_STRIDE : B_NF_STRIDE) + col] = rb[i];
	}
}

coopmat<float, gl_ScopeSubgroup, TM, TN, gl_MatrixUseAccumulator> acc[FM * FN];

// Multiply the staged tiles of buffer buf into this subgroup's accumulators.
void tile_mma(uint buf, uint wm0, uint wn0, bool a_kf, bool b_kf) {
	const uint abase = buf * (A_WORDS + B_WORDS), bbase = abase + A_WORDS;
	[[unroll]] for (uint kk = 0; kk < BK; kk += TK) {
		coopmat<float16_t, gl_ScopeSubgroup, TM, TK, gl_MatrixUseA> fa[FM];
		coopmat<float16_t, gl_ScopeSubgroup, TK, TN, gl_MatrixUseB> fb[FN];
		[[unroll]] for (uint i = 0; i < FM; i++) {
			uint m = wm0 + i * TM;
			if (a_kf) {
				coopMatLoad(fa[i], sh, abase + m * A_KF_STRIDE + kk / 8, A_KF_STRIDE, gl_CooperativeMatrixLayoutRowMajor);
			} else {
				coopMatLoad(fa[i], sh, abase + kk * A_MF_STRIDE + m / 8, A_MF_STRIDE, gl_CooperativeMatrixLayoutColumnMajor);
			}
		}
		[[unroll]] for (uint j = 0; j < FN; j++) {
			uint n = wn0 + j * TN;
			if (b_kf) {
				coopMatLoad(fb[j], sh, bbase + n * B_KF_STRIDE + kk / 8, B_KF_STRIDE, gl_CooperativeMatrixLayoutColumnMajor);
			} else {
				coopMatLoad(fb[j], sh, bbase + kk * B_NF_STRIDE + n / 8, B_NF_STRIDE, gl_CooperativeMatrixLayoutRowMajor);
			}
		}
		[[unroll]] for (uint i = 0; i < FM; i++)
			[[unroll]] for (uint j = 0; j < FN; j++) acc[i * FN + j] = coopMatMulAdd(fa[i], fb[j], acc[i * FN + j]);
	}
}

// Stage the fused term's tiles element by element (rank r is small):
// A2·alpha2 rounded to D, and B2 as stored. Row-major A ([BM][BK]) and
// column-major B ([BN][BK]) like the k-fast layouts.
void stage_lora(uint j0, uint m0, uint n0, uint wg) {
	const uint tid = gl_LocalInvocationID.x;
	const uint bbase = A_WORDS;
	for (uint c = tid; c < A_CHUNKS; c += wg) {
		uint mm = c / (BK / 8), jj = (c % (BK / 8)) * 8, m = m0 + mm;
		uint e[8];
		[[unroll]] for (uint i = 0; i < 8; i++) {
			uint j = j0 + jj + i;
			e[i] = (m < pc.M && j < pc.K2) ? to_d_bits(pc.alpha2 * a2[m * pc.a2_rs + j * pc.a2_cs]) : 0u;
		}
		sh[mm * A_KF_STRIDE + jj / 8] = pack8(e);
	}
	for (uint c = tid; c < B_CHUNKS; c += wg) {
		uint nn = c / (BK / 8), jj = (c % (BK / 8)) * 8, n = n0 + nn;
		uint e[8];
		[[unroll]] for (uint i = 0; i < 8; i++) {
			uint j = j0 + jj + i;
			e[i] = (n < pc.N && j < pc.K2) ? uint(b2[j * pc.b2_rs + n * pc.b2_cs]) : 0u;
		}
		sh[bbase + nn * B_KF_STRIDE + jj / 8] = pack8(e);
	}
}

void main() {
	const uint wg = gl_WorkGroupSize.x;
	const uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID, sgsize = gl_SubgroupSize;
	const uint wm0 = (sg / (BN / WN)) * WM, wn0 = (sg % (BN / WN)) * WN;
	const uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
	const uint kbeg = gl_WorkGroupID.z * pc.k_split;
	const uint kend = min(pc.K, kbeg + pc.k_split);
	const bool a_kf = pc.a_cs == 1u, b_kf = pc.b_rs == 1u;

	[[unroll]] for (uint f = 0; f < FM * FN; f++) {
		acc[f] = coopmat<float, gl_ScopeSubgroup, TM, TN, gl_MatrixUseAccumulator>(0.0);
	}

	uint buf = 0;
	if (kbeg < kend) {
		global_load(kbeg, kend, m0, n0, a_kf, b_kf, wg);
		shared_store(0, a_kf, b_kf, wg);
		barrier();
	}
	for (uint k0 = kbeg; k0 < kend; k0 += BK) {
		const bool more = k0 + BK < kend;
		if (more) {
			global_load(k0 + BK, kend, m0, n0, a_kf, b_kf, wg);
		}
		tile_mma(buf, wm0, wn0, a_kf, b_kf);
		if (more) {
			shared_store(buf ^ 1u, a_kf, b_kf, wg);
		}
		barrier();
		buf ^= 1u;
	}

	if (pc.alpha != 1.0) {
		[[unroll]] for (uint f = 0; f < FM * FN; f++) acc[f] = acc[f] * pc.alpha;
	}

	// The fused LoRA term: only the first z-slice adds it.
	if (gl_WorkGroupID.z == 0u) {
		for (uint j0 = 0; j0 < pc.K2; j0 += BK) {
			stage_lora(j0, m0, n0, wg);
			barrier();
			tile_mma(0, wm0, wn0, true, true);
			barrier();
		}
	}

	// Epilogue: each subgroup stores one accumulator at a time to its own
	// TM×TN f32 scratch (reusing the tile memory), then its lanes apply beta,
	// round and write the in-range elements.
	const uint scratch = sg * (TM * TN / 4);
	const uint cbase = gl_WorkGroupID.z * pc.M * pc.c_rs;
	[[unroll]] for (uint i = 0; i < FM; i++) {
		[[unroll]] for (uint j = 0; j < FN; j++) {
			coopMatStore(acc[i * FN + j], sh, scratch, TN / 4, gl_CooperativeMatrixLayoutRowMajor);
			subgroupMemoryBarrierShared();
			subgroupBarrier();
			for (uint e = lane; e < TM * TN; e += sgsize) {
				uint m = m0 + wm0 + i * TM + e / TN, n = n0 + wn0 + j * TN + e % TN;
				if (m < pc.M && n < pc.N) {
					float v = uintBitsToFloat(sh[scratch + e / 4][e % 4]);
					uint idx = cbase + m * pc.c_rs + n;
					if (pc.beta != 0.0) v += pc.beta * loadC(idx);
					storeC(idx, v);
				}
			}
			subgroupMemoryBarrierShared();
			subgroupBarrier();
		}
	}
}
