#version 450
// peak_fma: scalar fp32 FMA throughput (lorabench peak). Each invocation
// runs 8 independent vec4 FMA chains, x = fma(x, m, c), in registers; per
// loop iteration the body is repeated 4 times, so one iteration is
// 4·8·4 = 128 FMAs (256 FLOP). m and c are push constants (the driver
// cannot fold them) and the chains start at values that depend on the
// invocation index (so they are not uniform: no scalar-unit shortcut).
//
// With m = 1 and c = 2^-12 the result is exact in fp32, so the Go side
// checks it: o[s] (s = slot) = Σ_j (4j + (0,1,2,3)) + 8·(s & 7) + 32·iters·c.
//
// Bindings: set 0, binding 0 = vec4 o[slots].
// Push constants: uint iters; uint slots (a multiple of 8); float m; float c.
// Specialization constant 0 = workgroup size x.
// Dispatch: any number of workgroups along x; invocation g writes slot
// g % slots (slots ≡ 0 mod 8, so every writer of a slot writes the same value).

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(set = 0, binding = 0, std430) writeonly buffer Out { vec4 o[]; };

layout(push_constant, std430) uniform Push {
	uint iters;
	uint slots;
	float m;
	float c;
} pc;

#define STEP                                                                              \
	x0 = fma(x0, m, c); x1 = fma(x1, m, c); x2 = fma(x2, m, c); x3 = fma(x3, m, c);     \
	x4 = fma(x4, m, c); x5 = fma(x5, m, c); x6 = fma(x6, m, c); x7 = fma(x7, m, c);

void main() {
	const uint g = gl_GlobalInvocationID.x;
	const float base = float(g & 7u);
	vec4 x0 = vec4(0.0, 1.0, 2.0, 3.0) + base;
	vec4 x1 = vec4(4.0, 5.0, 6.0, 7.0) + base;
	vec4 x2 = vec4(8.0, 9.0, 10.0, 11.0) + base;
	vec4 x3 = vec4(12.0, 13.0, 14.0, 15.0) + base;
	vec4 x4 = vec4(16.0, 17.0, 18.0, 19.0) + base;
	vec4 x5 = vec4(20.0, 21.0, 22.0, 23.0) + base;
	vec4 x6 = vec4(24.0, 25.0, 26.0, 27.0) + base;
	vec4 x7 = vec4(28.0, 29.0, 30.0, 31.0) + base;
	const vec4 m = vec4(pc.m), c = vec4(pc.c);
	for (uint i = 0u; i < pc.iters; i++) {
		STEP
		STEP
		STEP
		STEP
	}
	o[g % pc.slots] = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));
}
