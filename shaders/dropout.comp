#version 450
// dropout: inverted dropout of the LoRA branch's input, and its backward.
//
// For x [rows, cols] (contiguous) and a keep mask M (1 keep, 0 drop):
//   MODE 0 (forward):  out = x ⊙ M · inv             (Xd, the LoRA input)
//   MODE 1 (residual): out = x − x ⊙ M · inv         (X − Xd, DoRA's base)
//   MODE 2 (backward): out = out + x ⊙ M · inv       (dX += D(T))
//   MODE 3 (expand):   out = out + T ⊙ M · inv, T = s·G·A for G f32 [rows,
//                      r] and A [r, cols] (dX's LoRA part, summed per kept
//                      element in f32 and never stored)
// with inv = 1/(1 − p) rounded to f32 once on the host, as torch's
// dropout scales. Each product is `precise` f32, then one rounding to D.
//
// The mask is either an explicit U8 tensor (binding 2, read as packed
// words: buffers are 16-byte rounded) or generated from a counter-based
// RNG: element e of the tensor keeps when word (offset + e) mod 4 of
// Philox-4x32-10 at counter ⌊(offset + e)/4⌋ under seed is ≥ threshold,
// threshold = round(p·2³²). The same (seed, offset) gives the
// same mask in the forward and the backward, so nothing is saved.
//
// Defines: D_TYPE (out and x), MODE, MASK (defined: explicit mask).
// Bindings: 0 out, 1 x (a dummy in MODE 3), 2 mask (a dummy without MASK),
// 3 G and 4 A (MODE 3 only).
// Push: rows, cols, threshold, inv, seed_lo, seed_hi, off_lo, off_hi, r,
// scale (r and scale: MODE 3).
// Dispatch: any (gx, gy, 1); the invocations, counted row-major over the
// grid, stride over the groups of four elements.
#extension GL_EXT_control_flow_attributes : enable
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
	uint r;
	float scale;
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
#if MODE == 3
layout(set = 0, binding = 3, std430) readonly buffer BufG { float gs[]; };
#define IN_NAME as
#define IN_LOAD loadA
#define IN_TYPE D_TYPE
#define IN_BINDING 4
#define IN_BLOCK BufA
#include "in_buf.glsl"

// T[i] = s·Σ_j G[m, j]·A[j, n] for element i = (m, n), in f32.
float lora_part(uint i) {
	const uint m = i / pc.cols, n = i - m * pc.cols;
	float t = 0.0;
	for (uint j = 0u; j < pc.r; j++) {
		t += gs[m * pc.r + j] * loadA(j * pc.cols + n);
	}
	return pc.scale * t;
}
#endif

// One invocation handles the four elements of one counter group: the
// elements e with ⌊(offset + e)/4⌋ equal, word (offset + e) mod 4 of the
// group's Philox draw deciding each (cuRAND's use of the generator: one
// draw, four words). The first and last groups of an unaligned offset are
// partial. With an explicit mask the groups are four elements from 0.
void main() {
	const uint numel = pc.rows * pc.cols;
#ifdef MASK
	const uint o3 = 0u;
#else
	const uint o3 = pc.off_lo & 3u;
	// ⌊offset/4⌋, 64 bits as two words.
	const uint base_lo = (pc.off_lo >> 2) | (pc.off_hi << 30), base_hi = pc.off_hi >> 2;
#endif
	const uint groups = (numel + o3 + 3u) / 4u;
	const uint width = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
	const uint stride = width * gl_NumWorkGroups.y;
	for (uint g = gl_GlobalInvocationID.y * width + gl_GlobalInvocationID.x; g < groups; g += stride) {
#ifdef MASK
		const uint bits = mask_words[g];
#else
		uint lo = base_lo + g;
		const uvec4 words = philox4(uvec2(lo, base_hi + (lo < g ? 1u : 0u)), uvec2(pc.seed_lo, pc.seed_hi));
#endif
		[[unroll]] for (uint w = 0u; w < 4u; w++) {
			if (4u * g + w < o3) {
				continue; // before the first element
			}
			const uint i = 4u * g + w - o3;
			if (i >= numel) {
				break;
			}
#ifdef MASK
			const bool keep = ((bits >> (w * 8u)) & 0xffu) != 0u;
#else
			const bool keep = words[w] >= pc.threshold;
#endif
#if MODE == 3
			precise float d = keep ? lora_part(i) * pc.inv : 0.0;
#else
			float x = loadX(i);
			precise float d = keep ? x * pc.inv : 0.0;
#endif
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
