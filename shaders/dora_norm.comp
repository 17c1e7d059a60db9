#version 450
// dora_norm: DoRA's detached row norm without the [out, in] matrix, as
// its reciprocal 1/n, and the magnitude scale c = m / n (PEFT's
// DoraLinearLayer):
//
//   n_o² = ‖W_o‖² + 2s·Σ_j B_oj·(W·Aᵀ)_oj + s²·Σ_jk B_oj·(A·Aᵀ)_jk·B_ok
//
// for V = W + s·B·A, from ‖W_o‖² (wsq, f32 [out]), A·Wᵀ (aw, f32 [r, out]:
// (W·Aᵀ)_oj = aw[j·out + o]), A·Aᵀ (aa, f32 [r, r]) and B [out, r]. The sum
// is f32; a negative value left by cancellation is clamped to 0.
//
// Defines: D_TYPE (B and m).
// Bindings: 0 1/n (f32 [out], written), 1 c (f32 [out], written), 2 wsq,
// 3 aw, 4 aa, 5 B, 6 m.
// Push: out, r, s.
// Dispatch: (⌈out/64⌉, 1, 1), workgroup 64; one invocation per row.
#include "types.glsl"

layout(local_size_x = 64, local_size_y = 1, local_size_z = 1) in;

layout(push_constant, std430) uniform Push {
	uint out_n;
	uint r;
	float s;
} pc;

layout(set = 0, binding = 0, std430) writeonly buffer BufN { float norm[]; };
layout(set = 0, binding = 1, std430) writeonly buffer BufCs { float cs[]; };
layout(set = 0, binding = 2, std430) readonly buffer BufW { float wsq[]; };
layout(set = 0, binding = 3, std430) readonly buffer BufAW { float aw[]; };
layout(set = 0, binding = 4, std430) readonly buffer BufAA { float aa[]; };

#define IN_NAME bs
#define IN_LOAD loadB
#define IN_TYPE D_TYPE
#define IN_BINDING 5
#define IN_BLOCK BufB
#include "in_buf.glsl"

#define IN_NAME ms
#define IN_LOAD loadM
#define IN_TYPE D_TYPE
#define IN_BINDING 6
#define IN_BLOCK BufM
#include "in_buf.glsl"

void main() {
	uint o = gl_GlobalInvocationID.x;
	if (o >= pc.out_n) {
		return;
	}
	float cross = 0.0, quad = 0.0;
	for (uint j = 0; j < pc.r; j++) {
		float bj = loadB(o * pc.r + j);
		cross += bj * aw[j * pc.out_n + o];
		float row = 0.0;
		for (uint k = 0; k < pc.r; k++) {
			row += aa[j * pc.r + k] * loadB(o * pc.r + k);
		}
		quad += bj * row;
	}
	float n2 = wsq[o] + 2.0 * pc.s * cross + pc.s * pc.s * quad;
	float n = sqrt(max(n2, 0.0));
	norm[o] = 1.0 / n;
	cs[o] = loadM(o) / n;
}
