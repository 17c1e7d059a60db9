#version 450
// peak_direct: the subgroup-scope matmul with no shared memory at all
// (lorabench peak -tiles, the "direct" row): every subgroup loads its A and
// B fragments straight from the storage buffers with coopMatLoad, so the
// K loop has no barriers and no stores, and the subgroups of a workgroup
// share their operands through the cache instead of a staged tile. It
// computes C = A·Bᵀ for A [M][K] and B [N][K] (both k-contiguous, the
// matmul's X·Wᵀ form) with M, N multiples of the workgroup tile and K of
// 8 and of BK, so no bounds are checked: a diagnosis of what a K step
// without staging costs, not a kernel for general shapes.
//
// Specialization constants: 0 workgroup size = (BM/WM)·(BN/WN)·subgroup
// size, 1 TM, 2 TN, 3 TK, 4 BM, 5 BN, 6 BK (K consumed per unrolled loop
// step), 7 WM, 8 WN. Defines: FM, FN.
// Bindings: 0 uvec4 a[] (A, 8 f16 per word); 1 uvec4 b[] (B); 2 float
// c[M·N] (row-major); 3 uint info[2] (gl_NumSubgroups, gl_SubgroupSize).
// Push constants: uint M, N, K, pad. Dispatch (N/BN, M/BM, 1).
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
const bool A_KF = true, B_KF = true;

layout(set = 0, binding = 0, std430) readonly buffer BufA { uvec4 a[]; };
layout(set = 0, binding = 1, std430) readonly buffer BufB { uvec4 b[]; };
layout(set = 0, binding = 2, std430) writeonly buffer BufC { float c[]; };
layout(set = 0, binding = 3, std430) writeonly buffer Info { uint info[]; };

layout(push_constant, std430) uniform Push {
	uint M;
	uint N;
	uint K;
	uint pad;
} pc;

#include "coop_tile.glsl"

#define LOAD_GA(i) coopMatLoad(fa##i, a, ((m0 + i * TM) * pc.K + k) / 8, pc.K / 8, gl_CooperativeMatrixLayoutRowMajor);
#define LOAD_GB(j) coopMatLoad(fb##j, b, ((n0 + j * TN) * pc.K + k) / 8, pc.K / 8, gl_CooperativeMatrixLayoutColumnMajor);
#define STORE_GC(i, j) coopMatStore(acc##i##j, c, (m0 + i * TM) * pc.N + n0 + j * TN, pc.N, gl_CooperativeMatrixLayoutRowMajor);

void main() {
	if (gl_GlobalInvocationID.x == 0u) {
		info[0] = gl_NumSubgroups;
		info[1] = gl_SubgroupSize;
	}
	const uint sg = gl_SubgroupID;
	const uint m0 = gl_WorkGroupID.y * BM + (sg / (BN / WN)) * WM;
	const uint n0 = gl_WorkGroupID.x * BN + (sg % (BN / WN)) * WN;

	FOR_ALL(DECL_ACC)
	FOR_I(DECL_FA)
	FOR_J(DECL_FB)
	for (uint k0 = 0; k0 < pc.K; k0 += BK) {
		[[unroll]] for (uint kk = 0; kk < BK; kk += TK) {
			const uint k = k0 + kk;
			FOR_I(LOAD_GA)
			FOR_J(LOAD_GB)
			FOR_ALL(MMA)
		}
	}
	FOR_ALL(STORE_GC)
}
