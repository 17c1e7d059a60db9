#version 450
// gated: the elementwise part of a gated MLP, forward or backward.
//
// Forward  (BACKWARD undefined): h = round(act(e)) · g.
// Backward (BACKWARD defined):   f = round(act(e)); h = f·g; dg = dh·f;
//                                de = dh·g·act'(e) — one pass that recomputes
//                                act(e) and h from the saved e and g.
// act(e) is rounded to the storage type before the product, as HF models do.
// Defines: D_TYPE (storage type of every buffer), ACT.
// Bindings, forward: 0 e, 1 g, 2 h. Backward: 0 e, 1 g, 2 dh, 3 h, 4 de,
// 5 dg; with Inplace the caller binds h over dh, de over e and dg over g:
// each invocation reads its element of every input before writing, so
// aliasing is safe.
// Push: uint count; uint row (elements per dispatch row). Specialization
// constant 0: workgroup size. Dispatch: (ceil(row/wg), ceil(count/row), 1),
// a 2-D grid so that counts beyond 2^31 elements index correctly.
#include "types.glsl"
#include "activation.glsl"

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(push_constant, std430) uniform Push {
	uint count;
	uint row;
} pc;

#if D_TYPE == TYPE_F32
#define STORE_T float
float ld(float v) { return v; }
float st(float v) { return v; }
float rnd(float v) { return v; }
#elif D_TYPE == TYPE_F16
#define STORE_T uint16_t
float ld(uint16_t v) { return f16_to_f32(uint(v)); }
uint16_t st(float v) { return uint16_t(f32_to_f16(v)); }
float rnd(float v) { return f16_to_f32(f32_to_f16(v)); }
#else
#define STORE_T uint16_t
float ld(uint16_t v) { return bf16_to_f32(uint(v)); }
uint16_t st(float v) { return uint16_t(f32_to_bf16(v)); }
float rnd(float v) { return bf16_to_f32(f32_to_bf16(v)); }
#endif

// No readonly/writeonly qualifiers: in-place backward aliases them.
layout(set = 0, binding = 0, std430) buffer BufE { STORE_T e[]; };
layout(set = 0, binding = 1, std430) buffer BufG { STORE_T g[]; };
#ifndef BACKWARD
layout(set = 0, binding = 2, std430) buffer BufH { STORE_T h[]; };
#else
layout(set = 0, binding = 2, std430) buffer BufDH { STORE_T dh[]; };
layout(set = 0, binding = 3, std430) buffer BufH { STORE_T h[]; };
layout(set = 0, binding = 4, std430) buffer BufDE { STORE_T de[]; };
layout(set = 0, binding = 5, std430) buffer BufDG { STORE_T dg[]; };
#endif

void main() {
	uint col = gl_GlobalInvocationID.x;
	if (col >= pc.row) return;
	// Rows stride by the grid height, which the Go side caps at the device's
	// workgroup-count limit (65535 on many GPUs), so any M works.
	const uint rows = (pc.count + pc.row - 1u) / pc.row;
	for (uint r = gl_WorkGroupID.y; r < rows; r += gl_NumWorkGroups.y) {
		uint i = r * pc.row + col;
		if (i >= pc.count) return;
		float ev = ld(e[i]), gv = ld(g[i]);
		float f = rnd(act_f(ev));
#ifndef BACKWARD
		h[i] = st(f * gv);
#else
		float dhv = ld(dh[i]);
		float grad = act_grad(ev);
		h[i] = st(f * gv);
		dg[i] = st(dhv * f);
		de[i] = st(dhv * gv * grad);
#endif
	}
}
