#version 450
// adamw: one step of torch.optim.AdamW (foreach=False, capturable=False,
// maximize=False, amsgrad=False) over one parameter, in f32, in the order of
// operations of torch's _single_tensor_adam (decoupled weight decay) on the
// CPU:
//
//   g = g·coef                 clip_grad_norm_'s g.mul_(coef), coef = clip[2]
//                              (skipped when clip == 0)
//   p = p·decay                param.mul_(1 − lr·wd), decay = f32(1 − lr·wd)
//   m = lerp(m, g, w1)         exp_avg.lerp_(grad, 1 − β1), w1 = f32(1 − β1):
//                              fma(w1, g − m, m) when |w1| < 0.5, else
//                              fma(w1 − 1, g − m, g) (ATen's lerp_vec;
//                              fused, one rounding: fma_rn)
//   v = v·β2; v = v + (c2·g)·g exp_avg_sq.mul_(β2).addcmul_(g, g, value=c2),
//                              c2 = f32(1 − β2)
//   d = sqrt(v) / bc2s + eps   (exp_avg_sq.sqrt() / bias_correction2_sqrt)
//                              .add_(eps), bc2s = f32(sqrt(1 − β2^t))
//   p = p + (nstep·m) / d      param.addcdiv_(exp_avg, d, value=nstep),
//                              nstep = f32(−lr / (1 − β1^t))
//
// The host computes the scalars in float64 as Python does and rounds each to
// f32 once, as torch does with a Python scalar. Every product, sum, quotient
// and square root is `precise` (one f32 operation, never contracted). The
// lerp's fused multiply-add is emulated (fma_rn) from adds and multiplies,
// which Vulkan requires correctly rounded, because GLSL's fma() may be
// unfused (lavapipe's is): so on a driver whose division and sqrt are
// correctly rounded (lavapipe) the bits equal a float32 CPU evaluation of
// the same steps; Vulkan allows OpFDiv and sqrt a few ulp elsewhere.
//
// 16-bit parameters (MASTER) keep an f32 master copy: p is read from and
// written to the master, and the parameter receives the master rounded to
// nearest even (types.glsl), so its bits do not depend on the driver.
//
// Defines: P_TYPE (parameter storage), G_TYPE (gradient storage: P_TYPE or
// TYPE_F32), MASTER (P_TYPE is 16-bit).
// Bindings: 0 param (P_TYPE; the master itself when P_TYPE is f32), 1 grad,
// 2 exp_avg (f32), 3 exp_avg_sq (f32), 4 clip (f32: [Σg², ‖g‖, coef, 0],
// written by sumsq.comp's final pass; read only when clip != 0), 5 master
// (f32, MASTER only). Each invocation reads its elements before writing
// them; no two bindings may overlap.
// Push: count, clip, decay, w1, beta2, c2, nstep, bc2s, eps.
// Specialization constant 0: workgroup size.
// Dispatch: (gx, 1, 1), any gx ≥ 1: invocations stride over the elements by
// gx·wg, so a small grid covers any tensor. The caller keeps count ≤ 2^31.
#include "types.glsl"

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(push_constant, std430) uniform Push {
	uint count;
	uint clip;
	float decay;
	float w1;
	float beta2;
	float c2;
	float nstep;
	float bc2s;
	float eps;
} pc;

#define C_TYPE P_TYPE
#define C_BINDING 0
#include "out_c.glsl"

#define IN_NAME g
#define IN_LOAD loadG
#define IN_TYPE G_TYPE
#define IN_BINDING 1
#define IN_BLOCK BufG
#include "in_buf.glsl"

layout(set = 0, binding = 2, std430) buffer BufM { float m[]; };
layout(set = 0, binding = 3, std430) buffer BufV { float v[]; };
layout(set = 0, binding = 4, std430) readonly buffer BufClip { float clipv[]; };
#ifdef MASTER
layout(set = 0, binding = 5, std430) buffer BufMaster { float master[]; };
#endif

// two_sum: s + e = a + b exactly, s = RN(a + b) (Knuth).
void two_sum(float a, float b, out float s, out float e) {
	precise float ss = a + b;
	precise float bb = ss - a;
	precise float ea = a - (ss - bb);
	precise float eb = b - bb;
	precise float ee = ea + eb;
	s = ss;
	e = ee;
}

// split: hi + lo = a, each half of a's 24-bit significand (Veltkamp, 2^12 + 1).
void split(float a, out float hi, out float lo) {
	precise float g = 4097.0 * a;
	precise float h = g - (g - a);
	precise float l = a - h;
	hi = h;
	lo = l;
}

// fma_rn is a·b + c rounded once to nearest even, from correctly rounded
// adds and multiplies only: Dekker's exact product, an exact sum, the low
// parts added with rounding to odd, then one rounding (Boldo & Melquiond,
// "Emulation of FMA and correctly rounded sums: proved algorithms using
// rounding to odd", IEEE TC 2008). Exact barring overflow (|a|, |b| beyond
// 2^115) and underflow of the low parts (results near 2^-100), which an
// optimizer's moments do not reach.
float fma_rn(float a, float b, float c) {
	precise float uh = a * b;
	float ah, al, bh, bl;
	split(a, ah, al);
	split(b, bh, bl);
	precise float p1 = ah * bh - uh;
	precise float p2 = ah * bl;
	precise float p3 = al * bh;
	precise float p4 = al * bl;
	precise float ul = ((p1 + p2) + p3) + p4;
	float th, tl, v, ve;
	two_sum(c, uh, th, tl);
	two_sum(tl, ul, v, ve);
	uint bits = floatBitsToUint(v);
	if (ve != 0.0 && (bits & 1u) == 0u) { // round to odd: step toward the exact value
		bits = (ve > 0.0) == (v > 0.0) ? bits + 1u : bits - 1u;
	}
	precise float z = th + uintBitsToFloat(bits);
	return z;
}

void main() {
	float coef = pc.clip != 0u ? clipv[2] : 1.0;
	bool small = abs(pc.w1) < 0.5;
	precise float w1m = pc.w1 - 1.0;
	uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
	for (uint i = gl_GlobalInvocationID.x; i < pc.count; i += stride) {
		float g0 = loadG(i);
		precise float gi = pc.clip != 0u ? g0 * coef : g0;
#ifdef MASTER
		float p0 = master[i];
#else
		float p0 = loadC(i);
#endif
		precise float p1 = p0 * pc.decay;

		float m0 = m[i];
		precise float dm = gi - m0;
		float m1 = small ? fma_rn(pc.w1, dm, m0) : fma_rn(w1m, dm, gi);

		precise float v1 = v[i] * pc.beta2;
		precise float cg = pc.c2 * gi;
		precise float cgg = cg * gi;
		precise float v2 = v1 + cgg;

		precise float s = sqrt(v2);
		precise float sb = s / pc.bc2s;
		precise float d = sb + pc.eps;
		precise float u = pc.nstep * m1;
		precise float q = u / d;
		precise float p2 = p1 + q;

		m[i] = m1;
		v[i] = v2;
#ifdef MASTER
		master[i] = p2;
#endif
		storeC(i, p2);
	}
}
