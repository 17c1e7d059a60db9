#version 450
// nf4_absmax: decode double-quantized NF4 scales on the GPU, bit for bit as
// the CPU (QuantState / NF4Weight.Absmax):
//
//     absmax[b] = f32( f32( code2[q[b]] · absmax2[b / nested_blocksize] ) + offset )
//
// Both operations are `precise` and separate: an FMA would change absmax by
// up to an ulp and every decoded weight with it.
// Bindings: 0 q (the 8-bit codes, read four to a uint), 1 absmax2, 2 code2
// (256 floats), 3 state (absmax[b] goes to state[16 + b]; the code map in
// front is left alone). Push: uint count; uint row; uint nested_blocksize;
// float offset. Specialization constant 0: workgroup size. Dispatch:
// (ceil(row/wg), ceil(count/row), 1).
layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(push_constant, std430) uniform Push {
	uint count;
	uint row;
	uint nested_blocksize;
	float offset;
} pc;

layout(set = 0, binding = 0, std430) readonly buffer BufQ { uint q[]; };
layout(set = 0, binding = 1, std430) readonly buffer BufA { float absmax2[]; };
layout(set = 0, binding = 2, std430) readonly buffer BufC { float code2[]; };
layout(set = 0, binding = 3, std430) writeonly buffer BufS { float qstate[]; };

void main() {
	uint col = gl_GlobalInvocationID.x;
	if (col >= pc.row) return;
	uint b = gl_WorkGroupID.y * pc.row + col;
	if (b >= pc.count) return;
	uint code = (q[b >> 2u] >> (8u * (b & 3u))) & 0xffu;
	precise float scaled = code2[code] * absmax2[b / pc.nested_blocksize];
	precise float a = scaled + pc.offset;
	qstate[16u + b] = a;
}
