#version 450
// fill: data[i] = value for i < count, over a buffer of 32-bit words.
//
// Bindings: set 0, binding 0 = the buffer (any 32-bit word type).
// Push constants: uint count; uint value (the word's bit pattern).
// Specialization constant 0 = workgroup size x.
// Dispatch: ceil(count / wg) workgroups along x; past 65535 workgroups
// (maxComputeWorkGroupCount[0] may be that small) split them over x and y:
// the index below linearises a 2-D grid, and the bound check absorbs the
// padding of the last row.

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(set = 0, binding = 0, std430) writeonly buffer Data {
	uint data[];
};

layout(push_constant, std430) uniform Push {
	uint count;
	uint value;
} pc;

void main() {
	uint i = gl_GlobalInvocationID.x +
	         gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
	if (i >= pc.count) {
		return;
	}
	data[i] = pc.value;
}
