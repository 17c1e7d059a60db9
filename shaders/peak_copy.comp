#version 450
// peak_copy: device-memory copy bandwidth (lorabench peak): dst[i] = src[i]
// over uvec4 (16-byte) elements, in a grid-stride loop so that any number
// of workgroups covers any size.
//
// Bindings: set 0, binding 0 = uvec4 src[n]; binding 1 = uvec4 dst[n].
// Push constants: uint n (elements).
// Specialization constant 0 = workgroup size x.
// Dispatch: up to ceil(n / wg) workgroups along x (fewer: each invocation
// then copies several elements, a grid's width apart).

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(set = 0, binding = 0, std430) readonly buffer Src { uvec4 src[]; };
layout(set = 0, binding = 1, std430) writeonly buffer Dst { uvec4 dst[]; };

layout(push_constant, std430) uniform Push { uint n; } pc;

void main() {
	const uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
	for (uint i = gl_GlobalInvocationID.x; i < pc.n; i += stride) {
		dst[i] = src[i];
	}
}
