#version 450
// peak_read: read bandwidth from a buffer small enough to stay in the GPU's
// last-level cache (lorabench peak -tiles). A tiled matmul's global loads
// mostly fetch tiles that other workgroups have already brought into L2,
// so this rate, times a tile's FLOP per loaded byte (BM·BN/(BM+BN) for
// 16-bit operands), bounds what the tile's global loads allow.
//
// Each invocation sums `reads` 16-byte elements, a grid's width apart,
// wrapping at n (a power of two, mask = n - 1), in four independent sums
// so that four loads are in flight per loop trip, and writes the total to
// dst at its index mod n (invocations that collide write the same value:
// every element of src is the same word). The Go side fills src with one
// word w and checks that dst holds reads·w.
//
// Bindings: 0 uvec4 src[n]; 1 uvec4 dst[n]. Push constants: uint mask;
// uint reads (a multiple of 4). Specialization constant 0: workgroup size.

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(set = 0, binding = 0, std430) readonly buffer Src { uvec4 src[]; };
layout(set = 0, binding = 1, std430) writeonly buffer Dst { uvec4 dst[]; };

layout(push_constant, std430) uniform Push {
	uint mask;
	uint reads;
} pc;

void main() {
	const uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
	uint i = gl_GlobalInvocationID.x;
	uvec4 s0 = uvec4(0), s1 = uvec4(0), s2 = uvec4(0), s3 = uvec4(0);
	for (uint r = 0; r < pc.reads; r += 4u) {
		s0 += src[i & pc.mask];
		s1 += src[(i + stride) & pc.mask];
		s2 += src[(i + 2u * stride) & pc.mask];
		s3 += src[(i + 3u * stride) & pc.mask];
		i += 4u * stride;
	}
	dst[gl_GlobalInvocationID.x & pc.mask] = s0 + s1 + s2 + s3;
}
