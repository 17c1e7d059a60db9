#version 450
// nf4_dequant: materialise a dense NF4 weight, bit for bit as the CPU
// decoder (quant.Dequantize) and the fused matmul load:
//
//     out[i] = to_D( f32( code[nibble(i)] · absmax[i / blocksize] ) )
//
// The product is `precise` (one correctly rounded f32 multiply, never fused
// with anything) and the narrowing to f16/bf16 is the integer
// round-to-nearest-even of types.glsl, so the result does not depend on the
// driver's float conversion mode.
// Defines: D_TYPE (output type). Bindings: 0 packed codes (bytes read four
// to a uint), 1 state (16 code values, then one f32 absmax per block),
// 2 out. Push: uint count; uint row (elements per dispatch row); uint
// blocksize; uint src0, src_ld, cols: out is a [count/cols, cols] region of
// the weight starting at flat element src0, whose rows are src_ld apart
// (the whole weight: 0, In, In). Specialization constant 0: workgroup
// size. Dispatch: (ceil(row/wg), ceil(count/row), 1), a 2-D grid so that
// counts beyond 65535 workgroups index correctly.
#include "types.glsl"

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(push_constant, std430) uniform Push {
	uint count;
	uint row;
	uint blocksize;
	uint src0, src_ld, cols;
} pc;

layout(set = 0, binding = 0, std430) readonly buffer BufQ { uint packed[]; };
layout(set = 0, binding = 1, std430) readonly buffer BufS { float qstate[]; };
#if D_TYPE == TYPE_F32
layout(set = 0, binding = 2, std430) writeonly buffer BufO { float outv[]; };
float st(float v) { return v; }
#elif D_TYPE == TYPE_F16
layout(set = 0, binding = 2, std430) writeonly buffer BufO { uint16_t outv[]; };
uint16_t st(float v) { return uint16_t(f32_to_f16(v)); }
#else
layout(set = 0, binding = 2, std430) writeonly buffer BufO { uint16_t outv[]; };
uint16_t st(float v) { return uint16_t(f32_to_bf16(v)); }
#endif

// ROUND_TYPE is left undefined: nf4_value returns the exact f32 product and
// st() does the one rounding to D.
#include "nf4.glsl"

void main() {
	uint col = gl_GlobalInvocationID.x;
	if (col >= pc.row) return;
	uint i = gl_WorkGroupID.y * pc.row + col;
	if (i >= pc.count) return;
	uint y = i / pc.cols;
	uint src = pc.src0 + y * pc.src_ld + (i - y * pc.cols);
	outv[i] = st(nf4_value(packed[src >> 3u], src, pc.blocksize));
}
