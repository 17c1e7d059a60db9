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
// constants: 0 workgroup size; 1 WIDE: each invocation takes one 16-byte
// word of every buffer (VE elements) instead of one element, which the Go
// side picks when a row is whole words and every binding starts on one
// (on the H200 one 16-bit element per invocation left the kernel at about
// a third of the memory's bandwidth). Dispatch: (ceil(row/(wg·e)),
// ceil(count/row), 1) with e = VE when WIDE else 1, a 2-D grid so that
// counts beyond 2^31 elements index correctly.
#extension GL_EXT_control_flow_attributes : enable
#include "types.glsl"
#include "activation.glsl"

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 1) const bool WIDE = false;

layout(push_constant, std430) uniform Push {
	uint count;
	uint row;
} pc;

#if D_TYPE == TYPE_F32
#define STORE_T float
float ld(float v) { return v; }
float st(float v) { return v; }
float rnd(float v) { return v; }
const uint VE = 4u;
// Element j of a 16-byte word, and the word's bits for element j's value.
float ldw(uvec4 w, uint j) { return uintBitsToFloat(w[j]); }
uint stw(float v, uint j) { return floatBitsToUint(v); }
#else
#define STORE_T uint16_t
#if D_TYPE == TYPE_F16
float ld16(uint v) { return f16_to_f32(v); }
uint st16(float v) { return f32_to_f16(v); }
#else
float ld16(uint v) { return bf16_to_f32(v); }
uint st16(float v) { return f32_to_bf16(v); }
#endif
float ld(uint16_t v) { return ld16(uint(v)); }
uint16_t st(float v) { return uint16_t(st16(v)); }
float rnd(float v) { return ld16(st16(v)); }
const uint VE = 8u;
float ldw(uvec4 w, uint j) { return ld16((w[j >> 1] >> (16u * (j & 1u))) & 0xffffu); }
uint stw(float v, uint j) { return (st16(v) & 0xffffu) << (16u * (j & 1u)); }
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
// The same bindings as 16-byte words (WIDE).
layout(set = 0, binding = 0, std430) buffer BufE4 { uvec4 e4[]; };
layout(set = 0, binding = 1, std430) buffer BufG4 { uvec4 g4[]; };
#ifndef BACKWARD
layout(set = 0, binding = 2, std430) buffer BufH4 { uvec4 h4[]; };
#else
layout(set = 0, binding = 2, std430) buffer BufDH4 { uvec4 dh4[]; };
layout(set = 0, binding = 3, std430) buffer BufH4 { uvec4 h4[]; };
layout(set = 0, binding = 4, std430) buffer BufDE4 { uvec4 de4[]; };
layout(set = 0, binding = 5, std430) buffer BufDG4 { uvec4 dg4[]; };
#endif

// One element's outputs from e, g and dh: h = round(act(e))·g, and for the
// backward dg = dh·round(act(e)) and de = dh·g·act'(e). Both paths below
// call it, so they compute alike; the forward's unused outputs are dead.
void element(float ev, float gv, float dhv, out float hv, out float dgv, out float dev) {
	float f = rnd(act_f(ev));
	hv = f * gv;
	dgv = dhv * f;
	dev = dhv * gv * act_grad(ev);
}

// Word i of every buffer, element by element.
void wide(uint i) {
	const uvec4 ew = e4[i], gw = g4[i];
#ifdef BACKWARD
	const uvec4 dhw = dh4[i];
#endif
	uvec4 hw = uvec4(0), dgw = uvec4(0), dew = uvec4(0);
	[[unroll]] for (uint j = 0; j < VE; ++j) {
		const uint w = (VE == 4u) ? j : (j >> 1);
		float dhv = 0.0;
#ifdef BACKWARD
		dhv = ldw(dhw, j);
#endif
		float hv, dgv, dev;
		element(ldw(ew, j), ldw(gw, j), dhv, hv, dgv, dev);
		hw[w] |= stw(hv, j);
		dgw[w] |= stw(dgv, j);
		dew[w] |= stw(dev, j);
	}
	h4[i] = hw;
#ifdef BACKWARD
	dg4[i] = dgw;
	de4[i] = dew;
#endif
}

void main() {
	uint col = gl_GlobalInvocationID.x;
	// Rows stride by the grid height, which the Go side caps at the device's
	// workgroup-count limit (65535 on many GPUs), so any M works.
	const uint rows = (pc.count + pc.row - 1u) / pc.row;
	if (WIDE) {
		const uint words = pc.row / VE;
		if (col >= words) return;
		for (uint r = gl_WorkGroupID.y; r < rows; r += gl_NumWorkGroups.y) {
			wide(r * words + col);
		}
		return;
	}
	if (col >= pc.row) return;
	for (uint r = gl_WorkGroupID.y; r < rows; r += gl_NumWorkGroups.y) {
		uint i = r * pc.row + col;
		if (i >= pc.count) return;
		float dhv = 0.0;
#ifdef BACKWARD
		dhv = ld(dh[i]);
#endif
		float hv, dgv, dev;
		element(ld(e[i]), ld(g[i]), dhv, hv, dgv, dev);
		h[i] = st(hv);
#ifdef BACKWARD
		dg[i] = st(dgv);
		de[i] = st(dev);
#endif
	}
}
