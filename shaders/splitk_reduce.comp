#version 450
// splitk_reduce: C[m,n] = Σ_s P[s,m,n] + beta·C[m,n], the second pass of a
// split-K matmul (the slices already carry alpha and the LoRA term).
//
// Defines: C_TYPE. Bindings: 0 P (f32 [S, M, c_rs]), 1 C.
// Push: M, N, c_rs, S, beta. Specialization constant 0: workgroup size.
// Dispatch: (ceil(N/wg), min(M, device limit), 1) — 2-D, so M·N may exceed
// 2^31 elements; rows beyond the grid height loop.
#include "types.glsl"

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(push_constant, std430) uniform Push {
	uint M, N, c_rs, S;
	float beta;
} pc;

layout(set = 0, binding = 0, std430) readonly buffer BufP { float p[]; };
#define C_BINDING 1
#include "out_c.glsl"

void main() {
	uint n = gl_GlobalInvocationID.x;
	if (n >= pc.N) return;
	uint slice = pc.M * pc.c_rs;
	// Rows stride by the grid height (capped at the device's limit).
	for (uint m = gl_WorkGroupID.y; m < pc.M; m += gl_NumWorkGroups.y) {
		uint idx = m * pc.c_rs + n;
		float v = 0.0;
		for (uint s = 0; s < pc.S; s++) v += p[s * slice + idx];
		if (pc.beta != 0.0) v += pc.beta * loadC(idx);
		storeC(idx, v);
	}
}
