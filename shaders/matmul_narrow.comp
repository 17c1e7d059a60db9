#version 450
// matmul_narrow: C = alpha·A·B + beta·C when one side of C is narrow: the
// LoRA rank products X·Aᵀ and G·B ([M, r], K = in or out), dB = Gᵀ·(X·Aᵀ)
// ([out, r], K = M) and dA = (G·B)ᵀ·X ([r, in], K = M). A tiled kernel
// wastes most of its tile on an r-wide output and rereads the small
// operand per tile; these products are bandwidth-bound, so this kernel
// reads the big operand (the one that holds C's wide side) exactly once
// per RB narrow columns, along its contiguous index, and keeps the small
// one in shared memory.
//
// Same push constants (matmul_push.glsl; no fused term), bindings 0 A,
// 1 B, 2 C, and split-K convention as matmul.comp: z-slice s covers
// pc.k_split of K and writes C at s·M·c_rs.
// Defines: A_TYPE, B_TYPE, C_TYPE (TYPE_F32/F16/BF16).
// Specialization constants: 0 workgroup size WG (a multiple of 32), 1 RB
// (narrow columns per workgroup, a multiple of 8), 2 RPT (wide indices per
// thread), 3 NARROW_M (the narrow side is M, so B is the big operand; else
// N and A), 4 AXPY (the big operand's unit stride is along the wide index;
// else along K).
// Dispatch: (ceil(W / wide-per-group), ceil(J / RB), splits) with W, J the
// wide and narrow extents; wide-per-group is WG/32·RPT for the K-contiguous
// form and WG·RPT for the wide-contiguous one.
#extension GL_EXT_control_flow_attributes : enable
#include "types.glsl"
#include "matmul_push.glsl"

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint RB = 16;
layout(constant_id = 2) const uint RPT = 4;
layout(constant_id = 3) const bool NARROW_M = false;
layout(constant_id = 4) const bool AXPY = false;

#define IN_NAME a
#define IN_LOAD loadA
#define IN_TYPE A_TYPE
#define IN_BINDING 0
#define IN_BLOCK BufA
#include "in_buf.glsl"

#define IN_NAME b
#define IN_LOAD loadB
#define IN_TYPE B_TYPE
#define IN_BINDING 1
#define IN_BLOCK BufB
#include "in_buf.glsl"

#define C_BINDING 2
#include "out_c.glsl"

// K-contiguous form: KL lanes split each staged K chunk, RG = WG/KL row
// groups own the wide indices, and the lanes' partial sums meet in red.
const uint KL = 32;
const uint RG = WG / KL;
const uint BKC = 128; // K per staged chunk of the small operand

// The small operand's chunk, f32: S[j·BKC + kk] (K-contiguous form, each
// lane reads its own kk) or S[kk·RB + j] (wide-contiguous form, every
// thread reads the same kk: a broadcast).
shared float S[RB * BKC];
shared float red[RG * 8 * (KL + 1)];

uint wideN() { return NARROW_M ? pc.N : pc.M; }
uint narrowN() { return NARROW_M ? pc.M : pc.N; }

float big(uint w, uint k) { return NARROW_M ? loadB(k * pc.b_rs + w * pc.b_cs) : loadA(w * pc.a_rs + k * pc.a_cs); }
float small(uint k, uint j) { return NARROW_M ? loadA(j * pc.a_rs + k * pc.a_cs) : loadB(k * pc.b_rs + j * pc.b_cs); }

uint s_at(uint kk, uint j) { return AXPY ? kk * RB + j : j * BKC + kk; }

// stage loads small[k0 .. k0+BKC) × [j0, j0+RB) into S, zero outside the
// slice and the matrix, reading along the small operand's unit stride.
void stage(uint k0, uint kend, uint j0) {
	const bool k_fast = (NARROW_M ? pc.a_cs : pc.b_rs) == 1u;
	for (uint e = gl_LocalInvocationID.x; e < RB * BKC; e += WG) {
		uint kk = k_fast ? e % BKC : e / RB, jj = k_fast ? e / BKC : e % RB;
		uint k = k0 + kk, j = j0 + jj;
		S[s_at(kk, jj)] = (k < kend && j < narrowN()) ? small(k, j) : 0.0;
	}
}

void write_out(uint w, uint j, float v) {
	if (w >= wideN() || j >= narrowN()) return;
	uint idx = pc.c_off + gl_WorkGroupID.z * pc.M * pc.c_rs + (NARROW_M ? j * pc.c_rs + w : w * pc.c_rs + j);
	v *= pc.alpha;
	if (pc.beta != 0.0) v += pc.beta * loadC(idx);
	storeC(idx, v);
}

float acc[RPT * RB];

// The big operand is contiguous along K (X·Aᵀ, G·B): lane l of row group
// g reads K indices l, l+KL, … of rows g, g+RG, …, so each load
// instruction covers KL consecutive elements of one row.
void k_contiguous(uint kbeg, uint kend, uint j0) {
	const uint tid = gl_LocalInvocationID.x, lane = tid % KL, rg = tid / KL;
	const uint w0 = gl_WorkGroupID.x * RG * RPT;
	for (uint k0 = kbeg; k0 < kend; k0 += BKC) {
		stage(k0, kend, j0);
		barrier();
		[[unroll]] for (uint q = 0; q < BKC / KL; q++) {
			uint kk = q * KL + lane, k = k0 + kk;
			float v[RPT];
			[[unroll]] for (uint r = 0; r < RPT; r++) {
				uint w = w0 + rg + r * RG;
				v[r] = (k < kend && w < wideN()) ? big(w, k) : 0.0;
			}
			[[unroll]] for (uint j = 0; j < RB; j++) {
				float s = S[j * BKC + kk];
				[[unroll]] for (uint r = 0; r < RPT; r++) acc[r * RB + j] = fma(v[r], s, acc[r * RB + j]);
			}
		}
		barrier();
	}
	// Sum the KL lanes' partials, eight narrow columns at a time.
	[[unroll]] for (uint r = 0; r < RPT; r++) {
		[[unroll]] for (uint jc = 0; jc < RB; jc += 8) {
			[[unroll]] for (uint jj = 0; jj < 8; jj++) red[(rg * 8 + jj) * (KL + 1) + lane] = acc[r * RB + jc + jj];
			barrier();
			if (tid < RG * 8) {
				uint g = tid / 8, jj = tid % 8;
				float sum = 0.0;
				for (uint l = 0; l < KL; l++) sum += red[(g * 8 + jj) * (KL + 1) + l];
				write_out(w0 + g + r * RG, j0 + jc + jj, sum);
			}
			barrier();
		}
	}
}

// The big operand is contiguous along the wide index (dB = Gᵀ·T, dA =
// Tᵀ·X with K = M): thread t owns wide indices t, t+WG, … and walks K;
// every thread reads the same row of S.
void wide_contiguous(uint kbeg, uint kend, uint j0) {
	const uint tid = gl_LocalInvocationID.x;
	const uint w0 = gl_WorkGroupID.x * WG * RPT;
	for (uint k0 = kbeg; k0 < kend; k0 += BKC) {
		stage(k0, kend, j0);
		barrier();
		const uint kn = min(BKC, kend - k0);
		uint kk = 0;
		// UK K steps per iteration keep UK·RPT loads in flight: with few
		// workgroups per multiprocessor, memory latency is hidden by loads
		// in flight per thread, not by other warps.
		const uint UK = 8;
		for (; kk + UK <= kn; kk += UK) {
			float v[UK * RPT];
			[[unroll]] for (uint u = 0; u < UK; u++)
				[[unroll]] for (uint r = 0; r < RPT; r++) {
					uint w = w0 + tid + r * WG;
					v[u * RPT + r] = w < wideN() ? big(w, k0 + kk + u) : 0.0;
				}
			[[unroll]] for (uint u = 0; u < UK; u++)
				[[unroll]] for (uint j = 0; j < RB; j++) {
					float s = S[(kk + u) * RB + j];
					[[unroll]] for (uint r = 0; r < RPT; r++) acc[r * RB + j] = fma(v[u * RPT + r], s, acc[r * RB + j]);
				}
		}
		for (; kk < kn; kk++) {
			[[unroll]] for (uint r = 0; r < RPT; r++) {
				uint w = w0 + tid + r * WG;
				float v = w < wideN() ? big(w, k0 + kk) : 0.0;
				[[unroll]] for (uint j = 0; j < RB; j++) acc[r * RB + j] = fma(v, S[kk * RB + j], acc[r * RB + j]);
			}
		}
		barrier();
	}
	[[unroll]] for (uint r = 0; r < RPT; r++)
		[[unroll]] for (uint j = 0; j < RB; j++) write_out(w0 + tid + r * WG, j0 + j, acc[r * RB + j]);
}

void main() {
	const uint kbeg = gl_WorkGroupID.z * pc.k_split;
	const uint kend = min(pc.K, kbeg + pc.k_split);
	const uint j0 = gl_WorkGroupID.y * RB;
	[[unroll]] for (uint i = 0; i < RPT * RB; i++) acc[i] = 0.0;
	if (AXPY) {
		wide_contiguous(kbeg, kend, j0);
	} else {
		k_contiguous(kbeg, kend, j0);
	}
}
