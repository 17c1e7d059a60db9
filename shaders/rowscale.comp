#version 450
// rowscale: the per-output-row step of merging a DoRA adapter into its base
// weight and of taking it out again (package lora, merge.go), over a weight
// w [rows, cols]:
//
// INVERSE undefined: w[i,j] = v[i]·(w[i,j] + alpha·a[i,j])   merge:   c ⊙ (W + s·B·A)
// INVERSE defined:   w[i,j] = w[i,j]/v[i] + alpha·a[i,j]     unmerge: W'/c − s·B·A
//
// a is f32 [rows, cols] (the product s·B·A, kept in f32), v is f32 [rows]
// (DoRA's c = m/‖W + s·B·A‖ per output row). Each step is one `precise` f32
// operation and the result is rounded once to D_TYPE (to nearest even, as
// out_c.glsl does), so a merged weight is rounded once, not per step. The
// division is the driver's f32 division (Vulkan allows 2.5 ulp).
//
// Defines: D_TYPE (storage type of w), INVERSE.
// Bindings: 0 w (read and written), 1 a (f32), 2 v (f32).
// Push: uint rows; uint cols; float alpha.
// Specialization constant 0: workgroup size.
// Dispatch: any (gx, gy, 1) with gx, gy ≥ 1, as add.comp: invocation x walks
// the columns with stride gx·wg and workgroup row y the rows with stride gy.
// The caller keeps rows·cols < 2^32.
#include "types.glsl"

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(push_constant, std430) uniform Push {
	uint rows;
	uint cols;
	float alpha;
} pc;

#define C_TYPE D_TYPE
#define C_BINDING 0
#include "out_c.glsl"

layout(set = 0, binding = 1, std430) readonly buffer BufA { float a[]; };
layout(set = 0, binding = 2, std430) readonly buffer BufV { float v[]; };

void main() {
	uint xstride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
	for (uint n = gl_GlobalInvocationID.x; n < pc.cols; n += xstride) {
		for (uint m = gl_WorkGroupID.y; m < pc.rows; m += gl_NumWorkGroups.y) {
			uint i = m * pc.cols + n;
			precise float t = pc.alpha * a[i];
#ifdef INVERSE
			precise float u = loadC(i) / v[m];
			precise float o = u + t;
#else
			precise float u = loadC(i) + t;
			precise float o = v[m] * u;
#endif
			storeC(i, o);
		}
	}
}
