#version 450
// colvec: the per-output-column vector operations of the LoRA extensions
// (lora_B bias, trainable base bias, DoRA), over a [rows, cols] matrix.
//
// OP_SCALE:  out[i,j] = alpha·out[i,j] + (v[j] + k)·a[i,j]
//            DoRA's c ⊙ z, G ⊙ c and G ⊙ (c − 1); v is f32 [cols].
// OP_COLSUM: out[y·cols + j] = alpha·Σ_i a[i,j]·(PROD: b[i,j]), times v[j]
//            when k ≠ 0, over the rows i of workgroup row y (chunk rows
//            each; all of them when chunk is 0): bias gradients s·Σ_i G and
//            DoRA's Σ_i G ⊙ z / n; a workgroup sums 64 columns over 4 lanes
//            of rows, then adds the lanes. With several workgroup rows it is
//            the first pass of a split sum, into f32 partials [y, cols];
//            the second sums those (A32: a is f32) into out.
// OP_ROWSQ:  out[i] = Σ_j a[i,j]²
//            ‖W_o‖² of a dense weight, or (NF4_A) of an NF4 weight decoded
//            element by element, each value rounded to D as dequantizing
//            it would, so no dense copy is made; a workgroup sums one row.
// All sums are f32; out of OP_SCALE is D, of the sums C_TYPE.
//
// Defines: D_TYPE (a, b, and out of OP_SCALE), C_TYPE (the sums' out), one
// OP_*, PROD (OP_COLSUM only), A32 (OP_COLSUM only: a is f32), NF4_A
// (OP_ROWSQ only: a is NF4, binding 1 its packed words, binding 3 its
// state: the code map, then one absmax per block).
// Bindings: 0 out, 1 a, 2 b (PROD; else a dummy), 3 v (f32; a dummy where
// unused).
// Push: rows, cols, alpha, k, chunk, blocksize (NF4_A).
// Dispatch: OP_SCALE any (gx, gy, 1), invocations stride; OP_COLSUM
// (⌈cols/64⌉, ⌈rows/chunk⌉, 1) with workgroup 64×4; OP_ROWSQ (g, 1, 1), workgroups
// stride over rows, workgroup 256.
#include "types.glsl"

#if defined(OP_SCALE)
layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
#elif defined(OP_COLSUM)
layout(local_size_x = 64, local_size_y = 4, local_size_z = 1) in;
#else
layout(local_size_x = 256, local_size_y = 1, local_size_z = 1) in;
#endif

layout(push_constant, std430) uniform Push {
	uint rows;
	uint cols;
	float alpha;
	float k;
	uint chunk;
	uint blocksize;
} pc;

#ifdef OP_SCALE
#define C_TYPE D_TYPE
#endif
#define C_BINDING 0
#include "out_c.glsl"

#ifdef NF4_A
layout(set = 0, binding = 1, std430) readonly buffer BufW { uint nf4w[]; };
layout(set = 0, binding = 3, std430) readonly buffer BufQ { float qstate[]; };
#define ROUND_TYPE D_TYPE
#include "nf4.glsl"
float loadA(uint i) { return nf4_value(nf4w[i >> 3], i, pc.blocksize); }
#else
#define IN_NAME as
#define IN_LOAD loadA
#ifdef A32
#define IN_TYPE TYPE_F32
#else
#define IN_TYPE D_TYPE
#endif
#define IN_BINDING 1
#define IN_BLOCK BufA
#include "in_buf.glsl"
#endif

#define IN_NAME bs
#define IN_LOAD loadB
#define IN_TYPE D_TYPE
#define IN_BINDING 2
#define IN_BLOCK BufB
#include "in_buf.glsl"
#ifndef NF4_A
layout(set = 0, binding = 3, std430) readonly buffer BufV { float v[]; };
#endif

#ifndef OP_SCALE
shared float part[256];
#endif

void main() {
#if defined(OP_SCALE)
	uint xstride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
	for (uint n = gl_GlobalInvocationID.x; n < pc.cols; n += xstride) {
		precise float f = v[n] + pc.k;
		for (uint m = gl_WorkGroupID.y; m < pc.rows; m += gl_NumWorkGroups.y) {
			uint i = m * pc.cols + n;
			precise float t = f * loadA(i);
			precise float o = pc.alpha == 0.0 ? t : pc.alpha * loadC(i) + t;
			storeC(i, o);
		}
	}
#elif defined(OP_COLSUM)
	uint n = gl_WorkGroupID.x * 64u + gl_LocalInvocationID.x;
	uint lane = gl_LocalInvocationID.y;
	uint m0 = pc.chunk == 0u ? 0u : gl_WorkGroupID.y * pc.chunk;
	uint m1 = pc.chunk == 0u ? pc.rows : min(pc.rows, m0 + pc.chunk);
	float acc = 0.0;
	if (n < pc.cols) {
		for (uint m = m0 + lane; m < m1; m += 4u) {
			uint i = m * pc.cols + n;
#ifdef PROD
			acc += loadA(i) * loadB(i);
#else
			acc += loadA(i);
#endif
		}
	}
	part[lane * 64u + gl_LocalInvocationID.x] = acc;
	barrier();
	if (lane == 0u && n < pc.cols) {
		float s = part[gl_LocalInvocationID.x] + part[64u + gl_LocalInvocationID.x] +
			part[128u + gl_LocalInvocationID.x] + part[192u + gl_LocalInvocationID.x];
		if (pc.k != 0.0) {
			s *= v[n];
		}
		storeC(gl_WorkGroupID.y * pc.cols + n, pc.alpha * s);
	}
#else
	uint t = gl_LocalInvocationID.x;
	for (uint row = gl_WorkGroupID.x; row < pc.rows; row += gl_NumWorkGroups.x) {
		float acc = 0.0;
		for (uint j = t; j < pc.cols; j += 256u) {
			float a = loadA(row * pc.cols + j);
			acc += a * a;
		}
		part[t] = acc;
		barrier();
		for (uint w = 128u; w > 0u; w >>= 1) {
			if (t < w) {
				part[t] += part[t + w];
			}
			barrier();
		}
		if (t == 0u) {
			storeC(row, part[0]);
		}
		barrier();
	}
#endif
}
