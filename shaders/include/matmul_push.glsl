// matmul_push.glsl: the push constants of matmul.comp, mirrored by
// lora.matmulPush in Go (a size guard there keeps them in step).
//
//   C[m,n] = alpha·Σ_k A[m,k]·B[k,n] + alpha2·Σ_j A2[m,j]·B2[j,n] + beta·C[m,n]
//
// Every operand is addressed by two element strides, so the three forms LoRA
// needs (X·Wᵀ, G·W, Gᵀ·X) and their transposes are one kernel. The second
// product (K2 > 0) is the LoRA term fused into the base matmul's K loop:
// A2 = X·Aᵀ (or G·B) [M, r] in f32 and B2 = Bᵀ (or A) [r, N].
layout(push_constant, std430) uniform Push {
	uint M, N, K, K2;
	uint a_rs, a_cs;   // A[m,k] = a[m·a_rs + k·a_cs]
	uint b_rs, b_cs;   // B[k,n] = b[k·b_rs + n·b_cs]
	uint c_rs;         // C[m,n] = c[m·c_rs + n]
	uint a2_rs, a2_cs; // A2[m,j]
	uint b2_rs, b2_cs; // B2[j,n]
	float alpha, beta, alpha2;
	uint blocksize;    // NF4 block size when B is NF4
	uint k_split;      // split-K: K range of one z-slice (multiple of BK), or K
	uint c_off, b2_off; // element offsets of C[0,0] and B2[0,0]: a column slab of a wider C
	// matmul_cm2's K segments 1 and 2 (SEGS > 1; other kernels ignore them):
	// their depth, fused-term rank and fused-term scale.
	uint seg_k[2];
	uint seg_r[2];
	float seg_alpha2[2];
} pc;
