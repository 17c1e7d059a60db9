#version 450
// matmul: tiled C = alpha·A·B + alpha2·A2·B2 + beta·C with fp32 accumulation.
//
// Defines: A_TYPE, B_TYPE (TYPE_F32/F16/BF16; B may be TYPE_NF4), C_TYPE,
// B2_TYPE (type of the LoRA matrix in the second product; A2 is always f32).
// Specialization constants: 0 BM, 1 BN, 2 BK (tile), 3 TM, 4 TN (outputs per
// thread), 5 workgroup size = (BM/TM)·(BN/TN).
// Bindings: 0 A, 1 B, 2 C, 3 A2, 4 B2, 5 NF4 state (16 code values then the
// per-block absmax, f32; unused unless B is NF4).
// Dispatch: (ceil(N/BN), ceil(M/BM), splits). With splits > 1 each z-slice
// covers pc.k_split of K and writes its partial sum to C (f32) at
// z·M·c_rs; a reduce pass adds the slices.
//
// The tile loads pick their fastest-varying index from the strides so that a
// transposed operand is still read along contiguous memory.
#extension GL_EXT_control_flow_attributes : enable
#include "types.glsl"
#include "matmul_push.glsl"

layout(constant_id = 0) const uint BM = 64;
layout(constant_id = 1) const uint BN = 64;
layout(constant_id = 2) const uint BK = 16;
layout(constant_id = 3) const uint TM = 4;
layout(constant_id = 4) const uint TN = 4;
layout(local_size_x_id = 5, local_size_y = 1, local_size_z = 1) in;

#define IN_NAME a
#define IN_LOAD loadA
#define IN_TYPE A_TYPE
#define IN_BINDING 0
#define IN_BLOCK BufA
#include "in_buf.glsl"

#if B_TYPE == TYPE_NF4
layout(set = 0, binding = 1, std430) readonly buffer BufB { uint b[]; };
layout(set = 0, binding = 5, std430) readonly buffer BufQ { float qstate[]; };
#include "nf4.glsl"
// Element i of the row-major [out,in] weight, rounded to ROUND_TYPE so the
// result matches dequantize-then-matmul exactly.
float loadB(uint i) { return nf4_value(b[i >> 3u], i, pc.blocksize); }
#else
#define IN_NAME b
#define IN_LOAD loadB
#define IN_TYPE B_TYPE
#define IN_BINDING 1
#define IN_BLOCK BufB
#include "in_buf.glsl"
#endif

#define C_BINDING 2
#include "out_c.glsl"

layout(set = 0, binding = 3, std430) readonly buffer BufA2 { float a2[]; };
#define IN_NAME b2
#define IN_LOAD loadB2
#define IN_TYPE B2_TYPE
#define IN_BINDING 4
#define IN_BLOCK BufB2
#include "in_buf.glsl"

// One padding column keeps threads that read a column from hitting one bank.
shared float As[BK * (BM + 1)];
shared float Bs[BK * (BN + 1)];

float acc[TM * TN];

// Multiply the tiles in shared memory into the accumulators.
void tile_fma(uint ty, uint tx) {
	const uint RM = BM / TM, RN = BN / TN;
	[[unroll]] for (uint kk = 0; kk < BK; kk++) {
		float av[TM], bv[TN];
		[[unroll]] for (uint i = 0; i < TM; i++) av[i] = As[kk * (BM + 1) + ty + i * RM];
		[[unroll]] for (uint j = 0; j < TN; j++) bv[j] = Bs[kk * (BN + 1) + tx + j * RN];
		[[unroll]] for (uint i = 0; i < TM; i++)
			[[unroll]] for (uint j = 0; j < TN; j++) acc[i * TN + j] = fma(av[i], bv[j], acc[i * TN + j]);
	}
}

void main() {
	const uint WG = (BM / TM) * (BN / TN);
	const uint tid = gl_LocalInvocationID.x;
	const uint tx = tid % (BN / TN), ty = tid / (BN / TN);
	const uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
	const uint kbeg = gl_WorkGroupID.z * pc.k_split;
	const uint kend = min(pc.K, kbeg + pc.k_split);
	// Fastest index of each tile load follows the operand's unit stride.
	const bool a_k_fast = pc.a_cs == 1u, b_n_fast = pc.b_cs == 1u;

	[[unroll]] for (uint i = 0; i < TM * TN; i++) acc[i] = 0.0;

	for (uint k0 = kbeg; k0 < kend; k0 += BK) {
		for (uint e = tid; e < BM * BK; e += WG) {
			uint mm = a_k_fast ? e / BK : e % BM, kk = a_k_fast ? e % BK : e / BM;
			uint m = m0 + mm, k = k0 + kk;
			As[kk * (BM + 1) + mm] = (m < pc.M && k < kend) ? loadA(m * pc.a_rs + k * pc.a_cs) : 0.0;
		}
		for (uint e = tid; e < BN * BK; e += WG) {
			uint nn = b_n_fast ? e % BN : e / BK, kk = b_n_fast ? e / BN : e % BK;
			uint n = n0 + nn, k = k0 + kk;
			Bs[kk * (BN + 1) + nn] = (n < pc.N && k < kend) ? loadB(k * pc.b_rs + n * pc.b_cs) : 0.0;
		}
		barrier();
		tile_fma(ty, tx);
		barrier();
	}

	[[unroll]] for (uint i = 0; i < TM * TN; i++) acc[i] *= pc.alpha;

	// The fused LoRA term: only the first z-slice adds it.
	if (gl_WorkGroupID.z == 0u) {
		const bool a2_j_fast = pc.a2_cs == 1u, b2_n_fast = pc.b2_cs == 1u;
		for (uint j0 = 0; j0 < pc.K2; j0 += BK) {
			for (uint e = tid; e < BM * BK; e += WG) {
				uint mm = a2_j_fast ? e / BK : e % BM, kk = a2_j_fast ? e % BK : e / BM;
				uint m = m0 + mm, j = j0 + kk;
				As[kk * (BM + 1) + mm] = (m < pc.M && j < pc.K2) ? pc.alpha2 * a2[m * pc.a2_rs + j * pc.a2_cs] : 0.0;
			}
			for (uint e = tid; e < BN * BK; e += WG) {
				uint nn = b2_n_fast ? e % BN : e / BK, kk = b2_n_fast ? e / BN : e % BK;
				uint n = n0 + nn, j = j0 + kk;
				Bs[kk * (BN + 1) + nn] = (n < pc.N && j < pc.K2) ? loadB2(pc.b2_off + j * pc.b2_rs + n * pc.b2_cs) : 0.0;
			}
			barrier();
			tile_fma(ty, tx);
			barrier();
		}
	}

	const uint RM = BM / TM, RN = BN / TN;
	const uint cbase = pc.c_off + gl_WorkGroupID.z * pc.M * pc.c_rs;
	[[unroll]] for (uint i = 0; i < TM; i++) {
		uint m = m0 + ty + i * RM;
		if (m >= pc.M) continue;
		[[unroll]] for (uint j = 0; j < TN; j++) {
			uint n = n0 + tx + j * RN;
			if (n >= pc.N) continue;
			uint idx = cbase + m * pc.c_rs + n;
			float v = acc[i * TN + j];
			if (pc.beta != 0.0) v += pc.beta * loadC(idx);
			storeC(idx, v);
		}
	}
}
