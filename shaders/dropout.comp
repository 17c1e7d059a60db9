#version 450
// dropout: inverted dropout of the LoRA branch's input, and its backward.
//
// For x [rows, cols] (contiguous) and a keep mask M (1 keep, 0 drop):
//   MODE 0 (forward):  out = x ⊙ M · inv             (Xd, the LoRA input)
//   MODE 1 (residual): out = x − x ⊙ M · inv         (X − Xd, DoRA's base)
//   MODE 2 (backward): out = out + x ⊙ M · inv       (dX += D(T))
// with inv = 1/(1 − p) rounded to f32 once on the host, as torch's
// dropout scales. Each product is `precise` f32, then one rounding to D.
//
// The mask is either an explicit U8 tensor (binding 2, read as packed
// words: buffers are 16-byte rounded) or generated from a counter-based
// RNG: element e of the tensor keeps when philox(seed, offset + e) ≥
// threshold, threshold = round(p·2³²). The same (seed, offset) gives the
// same mask in the forward and the backward, so nothing is saved.
//
// Defines: D_TYPE (out and x), MODE, MASK (defined: explicit mask).
// Bindings: 0 out, 1 x, 2 mask (a dummy without MASK).
// Push: rows, cols, threshold, inv, seed_lo, seed_hi, off_lo, off_hi.
// Dispatch: any (gx, gy, 1); invocations stride over columns and rows.
#include "types.glsl"
#include "philox.glsl"

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(push_constant, std430) uniform Push {
	uint rows;
	uint cols;
	uint threshold;
	float inv;
	uint seed_lo;
	uint seed_hi;
	uint off_lo;
	uint off_hi;
} pc;

#define C_TYPE D_TYPE
#define C_BINDING 0
#include "out_c.glsl"

#define IN_NAME xs
#define IN_LOAD loadX
#define IN_TYPE D_TYPE
#define IN_BINDING 1
#define IN_BLOCK BufX
#include "in_buf.glsl"

layout(set = 0, binding = 2, std430) readonly buffer BufM { uint mask_words[]; };

bool keep(uint i) {
#ifdef MASK
	return ((mask_words[i >> 2] >> ((i & 3u) * 8u)) & 0xffu) != 0u;
#else
	// The 64-bit counter offset + i, carried by hand.
	uint lo = pc.off_lo + i;
	uint hi = pc.off_hi + (lo < i ? 1u : 0u);
	return philox_u32(uvec2(lo, hi), uvec2(pc.seed_lo, pc.seed_hi)) >= pc.threshold;
#endif
}

void main() {
	uint xstride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
	for (uint n = gl_GlobalInvocationID.x; n < pc.cols; n += xstride) {
		for (uint m = gl_WorkGroupID.y; m < pc.rows; m += gl_NumWorkGroups.y) {
			uint i = m * pc.cols + n;
			float x = loadX(i);
			precise float d = keep(i) ? x * pc.inv : 0.0;
#if MODE == 0
			storeC(i, d);
#elif MODE == 1
			precise float v = x - d;
			storeC(i, v);
#else
			precise float v = loadC(i) + d;
			storeC(i, v);
#endif
		}
	}
}
