#version 450
// nf4_quantize: blockwise NF4 quantization, bit for bit as the CPU encoder
// (quant.QuantizeNF4 without double quantization). One workgroup per block:
//
//     absmax = max |w| over the block          (exact, any order)
//     r      = f32(1 / absmax)                 (correctly rounded, integer)
//     code   = #{ t in thresholds : f32(w · r) > t }
//
// GLSL division is only guaranteed to 2.5 ulp (NVIDIA uses an approximate
// reciprocal), and Vulkan's fma() may be unfused, so r is computed by
// integer long division on the mantissa: exact on every driver. The product
// w·r is a `precise` f32 multiply, which Vulkan requires correctly rounded.
// Caveats (documented in quant/gpu_quantize.go): a driver that flushes
// subnormal products to zero differs from the CPU when w·r is subnormal,
// and absmax > 2^126 (r subnormal) falls back to GLSL division.
// A zero block gives r = +Inf and x = NaN, code 0, as on the CPU.
//
// Each invocation packs 8 consecutive elements into one uint (byte j: even
// element in the high nibble), so words are owned and no atomics are
// needed. Elements past count encode 0·r (the CPU's odd-count padding).
// Defines: D_TYPE (input type). Bindings: 0 w, 1 packed (uint words),
// 2 state (absmax of block b is written to state[16 + b]; the first 16
// floats are the code map, left alone). Push: count, blocksize, nblocks,
// gx (workgroups per grid row), then the 15 thresholds. Specialization
// constant 0: workgroup size (a power of two). Dispatch: (gx, ceil(nblocks
// / gx), 1); block = wg.y·gx + wg.x.
#include "types.glsl"

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(push_constant, std430) uniform Push {
	uint count;
	uint blocksize;
	uint nblocks;
	uint gx;
	float thr[15];
} pc;

#if D_TYPE == TYPE_F32
layout(set = 0, binding = 0, std430) readonly buffer BufW { float w[]; };
float ld(uint i) { return w[i]; }
#elif D_TYPE == TYPE_F16
layout(set = 0, binding = 0, std430) readonly buffer BufW { uint16_t w[]; };
float ld(uint i) { return f16_to_f32(uint(w[i])); }
#else
layout(set = 0, binding = 0, std430) readonly buffer BufW { uint16_t w[]; };
float ld(uint i) { return bf16_to_f32(uint(w[i])); }
#endif
layout(set = 0, binding = 1, std430) writeonly buffer BufQ { uint packed[]; };
layout(set = 0, binding = 2, std430) buffer BufS { float qstate[]; };

shared float red[gl_WorkGroupSize.x];

// recip returns the correctly rounded f32 reciprocal of a ≥ 0 (+Inf for 0
// and for 1/a beyond the f32 range). With a = M·2^E, M in [2^23, 2^24), it
// long-divides 2^47 by M into a 24-bit quotient and rounds it to nearest
// even from the remainder: 1/a = (2^47/M)·2^(-E-47).
float recip(float a) {
	uint bits = floatBitsToUint(a);
	uint m = bits & 0x7fffffu;
	int e = int(bits >> 23u);
	int E;
	uint M;
	if (e == 0) { // zero or subnormal: normalise the mantissa
		if (m == 0u) return uintBitsToFloat(0x7f800000u);
		int sh = 23 - findMSB(m);
		M = m << uint(sh);
		E = -149 - sh;
	} else {
		M = m | 0x800000u;
		E = e - 150;
	}
	uint q;
	if (M == 0x800000u) {
		q = 1u << 24u; // a power of two: exact
	} else {
		uint r = 0x800000u; // 2^23 < M: the quotient has 24 bits
		q = 0u;
		for (int i = 0; i < 24; i++) {
			r <<= 1u;
			q <<= 1u;
			if (r >= M) {
				r -= M;
				q |= 1u;
			}
		}
		if (2u * r > M || (2u * r == M && (q & 1u) == 1u)) {
			q += 1u;
		}
	}
	int be = 103 - E; // biased exponent of q·2^(-E-47) for q in [2^23, 2^24)
	if (q == (1u << 24u)) {
		q = 0x800000u;
		be += 1;
	}
	if (be >= 255) return uintBitsToFloat(0x7f800000u);
	if (be <= 0) { // subnormal reciprocal (a > 2^126): not exact everywhere
		precise float rr = 1.0 / a;
		return rr;
	}
	return uintBitsToFloat((uint(be) << 23u) | (q & 0x7fffffu));
}

// code counts the thresholds strictly below x; NaN (all comparisons false)
// gives 0, as on the CPU.
uint nf4_code(float x) {
	uint c = 0u;
	for (int t = 0; t < 15; t++) {
		if (x > pc.thr[t]) c++;
	}
	return c;
}

void main() {
	uint b = gl_WorkGroupID.y * pc.gx + gl_WorkGroupID.x;
	if (b >= pc.nblocks) return; // uniform per workgroup: barriers below are safe
	uint lid = gl_LocalInvocationID.x;
	uint wg = gl_WorkGroupSize.x;
	uint lo = b * pc.blocksize;
	uint hi = min(lo + pc.blocksize, pc.count);

	float mx = 0.0;
	for (uint k = lo + lid; k < hi; k += wg) {
		mx = max(mx, abs(ld(k)));
	}
	red[lid] = mx;
	barrier();
	for (uint s = wg / 2u; s > 0u; s >>= 1u) {
		if (lid < s) red[lid] = max(red[lid], red[lid + s]);
		barrier();
	}
	float amax = red[0];
	if (lid == 0u) qstate[16u + b] = amax;
	float r = recip(amax);

	// Words of this block; blocksize is a multiple of 8, so none straddles.
	uint w0 = lo >> 3u, w1 = (hi + 7u) >> 3u;
	for (uint j = w0 + lid; j < w1; j += wg) {
		uint word = 0u;
		for (uint t = 0u; t < 8u; t++) {
			uint k = 8u * j + t;
			float v = k < pc.count ? ld(k) : 0.0;
			precise float x = v * r;
			uint c = nf4_code(x);
			// byte t/2: even element in the high nibble
			word |= c << (8u * (t >> 1u) + ((t & 1u) == 0u ? 4u : 0u));
		}
		packed[j] = word;
	}
}
