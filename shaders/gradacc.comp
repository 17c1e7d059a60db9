#version 450
// gradacc: acc[i] = acc[i] + alpha·src[i], an f32 gradient accumulator fed
// by micro-batch gradients of any float storage type (package optim). The
// product and the sum are each one `precise` f32 operation (never fused),
// so with alpha = 1 the accumulator is the f32 sum of the gradients, added
// in order. Also widens a 16-bit tensor exactly into a zeroed f32 one.
//
// Defines: D_TYPE (storage type of src). Bindings: 0 acc (f32, read and
// written), 1 src (D_TYPE; may be bound over acc when D_TYPE is f32: each
// invocation reads its element before writing it).
// Push: uint count; float alpha.
// Specialization constant 0: workgroup size.
// Dispatch: (gx, 1, 1), any gx ≥ 1: invocations stride over the elements by
// gx·wg. The caller keeps count ≤ 2^31.
#include "types.glsl"

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(push_constant, std430) uniform Push {
	uint count;
	float alpha;
} pc;

layout(set = 0, binding = 0, std430) buffer BufAcc { float acc[]; };

#define IN_NAME s
#define IN_LOAD loadS
#define IN_TYPE D_TYPE
#define IN_BINDING 1
#define IN_BLOCK BufS
#include "in_buf.glsl"

void main() {
	uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
	for (uint i = gl_GlobalInvocationID.x; i < pc.count; i += stride) {
		precise float t = pc.alpha * loadS(i);
		precise float a = acc[i] + t;
		acc[i] = a;
	}
}
