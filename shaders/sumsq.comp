#version 450
// sumsq: the global L2 norm of a set of gradients and the clip coefficient
// of torch.nn.utils.clip_grad_norm_, on the device, in two passes, in f32.
//
// Pass 1 (FINAL undefined), one dispatch per gradient tensor:
//   partial[base + w] = Σ x[i]² over the elements workgroup w visits.
// Pass 2 (FINAL defined), one workgroup:
//   S = Σ partial[0..count);  out[0] = S;  out[1] = ‖g‖ = sqrt(S);
//   out[2] = coef = min(f32(1 / (‖g‖ + 1e-6)) · max_norm, 1) when clip != 0,
//            else 1;  out[3] = 0.
// coef is torch's `max_norm / (total_norm + 1e-6)` (Tensor.__rtruediv__ is
// reciprocal() · max_norm) clamped to ≤ 1; a NaN norm gives a NaN coef, as in
// torch (error_if_nonfinite=False).
//
// Each invocation sums its elements in index order, then the workgroup adds
// the invocations' sums in a fixed tree, so the result depends only on the
// grid, never on scheduling: a run is reproducible bit for bit. Squares and
// sums are `precise` f32 operations.
//
// Defines: D_TYPE (pass 1: the gradient's storage type; pass 2: TYPE_F32),
// FINAL. Bindings: pass 1: 0 x (D_TYPE), 1 partial (f32); pass 2: 0 partial
// (f32), 1 out (f32[4]).
// Push: count (elements of x, or partials), base (pass 1: index of this
// tensor's first partial), clip, max_norm (pass 2).
// Specialization constant 0: workgroup size, a power of two.
// Dispatch: pass 1 (gx, 1, 1) with gx ≥ 1 (gx partials written from base);
// pass 2 (1, 1, 1). The caller keeps count ≤ 2^31.
#include "types.glsl"

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(push_constant, std430) uniform Push {
	uint count;
	uint base;
	uint clip;
	float max_norm;
} pc;

#define IN_NAME x
#define IN_LOAD loadX
#define IN_TYPE D_TYPE
#define IN_BINDING 0
#define IN_BLOCK BufX
#include "in_buf.glsl"

layout(set = 0, binding = 1, std430) writeonly buffer BufOut { float outv[]; };

shared float red[gl_WorkGroupSize.x];

void main() {
	uint lid = gl_LocalInvocationID.x;
	uint wg = gl_WorkGroupSize.x;
#ifdef FINAL
	uint first = lid, stride = wg;
#else
	uint first = gl_GlobalInvocationID.x, stride = gl_NumWorkGroups.x * wg;
#endif
	float acc = 0.0;
	for (uint i = first; i < pc.count; i += stride) {
		float e = loadX(i);
#ifdef FINAL
		precise float a = acc + e;
#else
		precise float sq = e * e;
		precise float a = acc + sq;
#endif
		acc = a;
	}
	red[lid] = acc;
	barrier();
	for (uint s = wg / 2u; s > 0u; s >>= 1u) {
		if (lid < s) {
			precise float a = red[lid] + red[lid + s];
			red[lid] = a;
		}
		barrier();
	}
	if (lid != 0u) {
		return;
	}
#ifdef FINAL
	float total = red[0];
	precise float norm = sqrt(total);
	float coef = 1.0;
	if (pc.clip != 0u) {
		precise float den = norm + 1e-6;
		precise float r = 1.0 / den;
		precise float c = r * pc.max_norm;
		coef = c > 1.0 ? 1.0 : c; // NaN stays NaN, as torch.clamp(max=1)
	}
	outv[0] = total;
	outv[1] = norm;
	outv[2] = coef;
	outv[3] = 0.0;
#else
	outv[pc.base + gl_WorkGroupID.x] = red[0];
#endif
}
