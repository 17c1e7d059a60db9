#version 450
// add: elementwise accumulation into dst, in fp32, one rounding to D_TYPE.
//
// BIAS undefined: dst[i] = dst[i] + alpha·src[i]       (dst, src: count elements)
// BIAS defined:   dst[m,n] = dst[m,n] + alpha·bias[n]   (dst [rows, cols], bias [cols])
//
// The product and the sum are `precise` (each one correctly rounded f32
// operation, never fused into an FMA), and the narrowing to f16/bf16 is the
// integer round-to-nearest-even of types.glsl, so the bits of the result do
// not depend on the driver.
//
// Defines: D_TYPE (storage type of every buffer), BIAS.
// Bindings: 0 dst (read and written), 1 src or bias. src may be bound over
// dst: each invocation reads its element before writing it.
// Push: uint rows; uint cols; float alpha. The plain add
// sees its count elements as one row (rows = 1, cols = count).
// Specialization constant 0: workgroup size.
// Dispatch: any (gx, gy, 1) with gx, gy ≥ 1. Invocation x walks the columns
// with stride gx·wg and workgroup row y the rows with stride gy, so a small
// grid covers any tensor (no 65535 limit on either extent) and a bias value
// is loaded once for all the rows an invocation visits. The caller keeps
// rows·cols < 2^32 and rows, cols ≤ 2^31, so no index wraps.
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

#define IN_NAME s
#define IN_LOAD loadS
#define IN_TYPE D_TYPE
#define IN_BINDING 1
#define IN_BLOCK BufS
#include "in_buf.glsl"

void main() {
	uint xstride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
	for (uint n = gl_GlobalInvocationID.x; n < pc.cols; n += xstride) {
#ifdef BIAS
		precise float b = pc.alpha * loadS(n);
#endif
		for (uint m = gl_WorkGroupID.y; m < pc.rows; m += gl_NumWorkGroups.y) {
			uint i = m * pc.cols + n;
#ifdef BIAS
			precise float v = loadC(i) + b;
#else
			precise float t = pc.alpha * loadS(i);
			precise float v = loadC(i) + t;
#endif
			storeC(i, v);
		}
	}
}
