#version 450
// peak_tile: the subgroup-scope matmul's inner loop (TILE_MMA of
// coop_tile.glsl: the same fragments, layouts, padded shared tile and
// coopMatLoads as matmul_coopmat.comp) fed from a tile staged once, with
// none of the matmul's global loads (lorabench peak -tiles). Stage by
// stage it adds back what one K step of the single-buffered matmul does
// besides its multiplies, so the gap between the register-resident peak
// and the matmul splits into shared-memory fragment loads, barriers and
// shared-memory stores, and what remains is the global loads'.
//
// Specialization constants: 0 workgroup size = (BM/WM)·(BN/WN)·subgroup
// size, 1 TM, 2 TN, 3 TK (a reported shape), 4 BM, 5 BN, 6 BK, 7 WM, 8 WN
// (as matmul_coopmat's, FM·TM = WM and FN·TN = WN), 9 STAGE: 0 fragment
// loads and multiplies only; 1 also the two barriers of a K step; 2 also
// the K step's shared stores of the staging registers between them; 3 the
// fragment loads alone, no multiplies (each fragment is added, element by
// element, into one A and one B sum, multiplied once at the end so that
// the loads stay live): the shared-memory load rate of the tile's own
// loads, against which stage 0 says whether loads or multiplies bound it.
// Defines: FM, FN (the fragment grid). Both operands are k-contiguous (the
// matmul's X·Wᵀ form).
//
// Bindings: 0 uvec4 in[] (its first word fills every staged chunk; the Go
// side fills it with 2^-4 in f16, so every element of every accumulator
// gains BK·2^-8 per iteration, exactly; with zeros for stage 3, whose sums
// are then exactly 0); 1 float out[slots·TM·TN] (the sum
// of each subgroup's accumulators, subgroup s into slot s % slots); 2 uint
// info[2] (gl_NumSubgroups, gl_SubgroupSize).
// Push constants: uint iters; uint slots; uint zero (0: the tile's base
// word is iteration·zero, which the compiler cannot prove constant, so it
// cannot hoist the fragment loads out of the loop); uint pad.
#extension GL_EXT_control_flow_attributes : enable
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 1) const uint TM = 16;
layout(constant_id = 2) const uint TN = 16;
layout(constant_id = 3) const uint TK = 16;
layout(constant_id = 4) const uint BM = 256;
layout(constant_id = 5) const uint BN = 128;
layout(constant_id = 6) const uint BK = 32;
layout(constant_id = 7) const uint WM = 64;
layout(constant_id = 8) const uint WN = 32;
layout(constant_id = 9) const uint STAGE = 0;
const bool A_KF = true, B_KF = true;

layout(set = 0, binding = 0, std430) readonly buffer In { uvec4 inp[]; };
layout(set = 0, binding = 1, std430) writeonly buffer Out { float outp[]; };
layout(set = 0, binding = 2, std430) writeonly buffer Info { uint info[]; };

layout(push_constant, std430) uniform Push {
	uint iters;
	uint slots;
	uint zero;
	uint pad;
} pc;

#include "coop_tile.glsl"
shared uvec4 sh[BUF_WORDS];

#define ADD_ACC(i, j) sum += acc##i##j;
#define FA_T coopmat<float16_t, gl_ScopeSubgroup, TM, TK, gl_MatrixUseA>
#define FB_T coopmat<float16_t, gl_ScopeSubgroup, TK, TN, gl_MatrixUseB>
#define SUM_FA(i) fsa = fsa + fa##i;
#define SUM_FB(j) fsb = fsb + fb##j;
// TILE_MMA's loads without its multiplies (stage 3).
#define TILE_LOADS(base)                                                      \
	{                                                                         \
		const uint base_ = (base);                                            \
		[[unroll]] for (uint kk = 0; kk < BK; kk += TK) {                     \
			FOR_I(LOAD_FA)                                                    \
			FOR_J(LOAD_FB)                                                    \
			FOR_I(SUM_FA)                                                     \
			FOR_J(SUM_FB)                                                     \
		}                                                                     \
	}

void main() {
	if (gl_GlobalInvocationID.x == 0u) {
		info[0] = gl_NumSubgroups;
		info[1] = gl_SubgroupSize;
	}
	const uint tid = gl_LocalInvocationID.x;
	const uint sg = gl_SubgroupID;
	const uint wm0 = (sg / (BN / WN)) * WM, wn0 = (sg % (BN / WN)) * WN;

	FOR_ALL(DECL_ACC)
	FOR_I(DECL_FA)
	FOR_J(DECL_FB)
	uvec4 ra[A_PER_THREAD], rb[B_PER_THREAD];
	const uvec4 fill = inp[0];
	[[unroll]] for (uint i = 0; i < A_PER_THREAD; i++) ra[i] = fill;
	[[unroll]] for (uint i = 0; i < B_PER_THREAD; i++) rb[i] = fill;
	SHARED_STORE(0)
	barrier();

	FA_T fsa = FA_T(float16_t(0.0));
	FB_T fsb = FB_T(float16_t(0.0));
	for (uint it = 0; it < pc.iters; it++) {
		if (STAGE == 3u) {
			TILE_LOADS(it * pc.zero)
			continue;
		}
		TILE_MMA(it * pc.zero)
		if (STAGE >= 1u) {
			barrier();
			if (STAGE >= 2u) {
				SHARED_STORE(it * pc.zero)
			}
			barrier();
		}
	}

	if (STAGE == 3u) {
		acc00 = coopMatMulAdd(fsa, fsb, acc00);
	}
	ACC_T sum = ACC_T(0.0);
	FOR_ALL(ADD_ACC)
	const uint slot = (gl_WorkGroupID.x * gl_NumSubgroups + sg) % pc.slots;
	coopMatStore(sum, outp, slot * TM * TN, TN, gl_CooperativeMatrixLayoutRowMajor);
}
