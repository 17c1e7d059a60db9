#version 450
// peak_coopmat: subgroup-scope cooperative-matrix throughput (lorabench
// peak), register-resident. Each subgroup loads two A (TM×TK) and four B
// (TK×TN) matrices once, then runs `iters` iterations of 8 coopMatMulAdd
// into 8 separately named accumulators c<i><j> += a<i>·b<j> (independent
// chains, no array that could land in local memory), and finally stores
// their sum, so nothing is dead code.
//
// Defines: A_ELEM (float16_t, int8_t or uint8_t: the A and B component
// type; bf16 is the float16_t module retyped by the generator, see
// Variant.BFloat16), C_ELEM (float, float16_t, int32_t or uint32_t: the
// accumulator and result type), C_ZERO (its zero literal).
//
// The Go side fills the input with one constant (f16/bf16 2^-4, int8 1),
// so every element of the stored sum is 8·iters·TK·a·b, exact in the
// accumulator type for iters ≤ 2048, and checks it.
//
// Bindings: set 0, binding 0 = uvec4 in[] (A0, A1 row-major with a row
// stride of a_stride uvec4, then B0..B3 row-major with b_stride);
// binding 1 = C_ELEM out[slots·TM·TN]; binding 2 = uint info[2]
// (gl_NumSubgroups and gl_SubgroupSize, written by the first invocation,
// so the Go side counts the subgroups that really ran).
// Push constants: uint iters; uint slots; uint a_stride; uint b_stride.
// Specialization constants: 0 workgroup size x (a multiple of the subgroup
// size), 1 TM, 2 TN, 3 TK (a shape the device reports).
// Dispatch: any number of workgroups along x; subgroup s (counted over the
// dispatch) stores into slot s % slots.
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types : require

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 1) const uint TM = 16;
layout(constant_id = 2) const uint TN = 16;
layout(constant_id = 3) const uint TK = 16;

layout(set = 0, binding = 0, std430) readonly buffer In { uvec4 inp[]; };
layout(set = 0, binding = 1, std430) writeonly buffer Out { C_ELEM outp[]; };
layout(set = 0, binding = 2, std430) writeonly buffer Info { uint info[]; };

layout(push_constant, std430) uniform Push {
	uint iters;
	uint slots;
	uint a_stride;
	uint b_stride;
} pc;

#define MAT_A coopmat<A_ELEM, gl_ScopeSubgroup, TM, TK, gl_MatrixUseA>
#define MAT_B coopmat<A_ELEM, gl_ScopeSubgroup, TK, TN, gl_MatrixUseB>
#define ACC coopmat<C_ELEM, gl_ScopeSubgroup, TM, TN, gl_MatrixUseAccumulator>

void main() {
	if (gl_GlobalInvocationID.x == 0u) {
		info[0] = gl_NumSubgroups;
		info[1] = gl_SubgroupSize;
	}
	const uint as = pc.a_stride, bs = pc.b_stride;
	const uint b0 = 2u * TM * as;
	MAT_A a0, a1;
	MAT_B e0, e1, e2, e3;
	coopMatLoad(a0, inp, 0u, as, gl_CooperativeMatrixLayoutRowMajor);
	coopMatLoad(a1, inp, TM * as, as, gl_CooperativeMatrixLayoutRowMajor);
	coopMatLoad(e0, inp, b0, bs, gl_CooperativeMatrixLayoutRowMajor);
	coopMatLoad(e1, inp, b0 + TK * bs, bs, gl_CooperativeMatrixLayoutRowMajor);
	coopMatLoad(e2, inp, b0 + 2u * TK * bs, bs, gl_CooperativeMatrixLayoutRowMajor);
	coopMatLoad(e3, inp, b0 + 3u * TK * bs, bs, gl_CooperativeMatrixLayoutRowMajor);
	ACC c00 = ACC(C_ZERO), c01 = ACC(C_ZERO), c02 = ACC(C_ZERO), c03 = ACC(C_ZERO);
	ACC c10 = ACC(C_ZERO), c11 = ACC(C_ZERO), c12 = ACC(C_ZERO), c13 = ACC(C_ZERO);
	for (uint i = 0u; i < pc.iters; i++) {
		c00 = coopMatMulAdd(a0, e0, c00);
		c01 = coopMatMulAdd(a0, e1, c01);
		c02 = coopMatMulAdd(a0, e2, c02);
		c03 = coopMatMulAdd(a0, e3, c03);
		c10 = coopMatMulAdd(a1, e0, c10);
		c11 = coopMatMulAdd(a1, e1, c11);
		c12 = coopMatMulAdd(a1, e2, c12);
		c13 = coopMatMulAdd(a1, e3, c13);
	}
	ACC sum = ((c00 + c01) + (c02 + c03)) + ((c10 + c11) + (c12 + c13));
	const uint sg = gl_WorkGroupID.x * gl_NumSubgroups + gl_SubgroupID;
	coopMatStore(sum, outp, (sg % pc.slots) * TM * TN, TN, gl_CooperativeMatrixLayoutRowMajor);
}
