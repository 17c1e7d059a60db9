#version 450
// matmul_cm2: C = alpha·A·B + alpha2·A2·B2 + beta·C on workgroup-scope
// cooperative matrices (VK_NV_cooperative_matrix2), 16-bit inputs and fp32
// accumulation. Same push constants, bindings and dispatch as matmul.comp,
// so the Go side picks this, matmul_coopmat or the scalar kernel per gemm.
//
// With workgroup scope the driver stages tiles in shared memory itself:
// the kernel only names the BM×BK and BK×BN slices of each operand through
// tensor layouts (memory order, unit stride innermost) and a transposing
// view where the operand's contiguous index is not the one the matrix use
// expects. Out-of-range elements read as zero (clamp mode constant) and are
// never stored, so any shape works; tiles wholly in range with 16-byte
// aligned rows take a loop on unclamped layouts, which the driver compiles
// to wider loads. (Plain coopMatLoad with row- or column-major layouts in
// that loop measured several times slower: docs/PERFORMANCE.md.)
//
// Defines: D_TYPE (TYPE_F16 or TYPE_BF16), B_TYPE (D_TYPE or TYPE_NF4:
// 4-bit weights, decoded into shared memory by the kernel),
// C_TYPE (D_TYPE or TYPE_F32). Matrices are declared float16_t; the bf16
// variants are this module retyped by the generator (glslang 15.1 has no
// bfloat16_t), which accepts the 16-bit type only as a cooperative-matrix
// component.
//
// Specialization constants: 0 BM, 1 BN, 2 BK (workgroup tile), 3 workgroup
// size, 4 A_KF (A's k index is contiguous, else its m index), 5 B_KF (B's k
// index is contiguous, else its n index), 6 UNROLL (K steps per unrolled
// group in the in-range loop: unrolled, the next step's tile loads are
// independent of this step's multiply, so the driver can issue them early;
// a rolled loop waits for each step's loads before its multiply), 7 SEGS
// (K segments, 1 to 3: see below), 8 BK2 (the fused term's K step).
//
// K segments: with SEGS > 1 the product is C = alpha·Σ_s A_s·B_s +
// Σ_s alpha2_s·A2_s·B2_s + beta·C, where segment 0 is A, B, A2, B2 above
// and segments 1 and 2 are whole contiguous tensors at bindings 6..9 and
// 10..13 (A_s, B_s, A2_s, B2_s), in the same operand forms as segment 0,
// seg_k[s-1] deep with seg_r[s-1]-column fused terms. One workgroup walks
// every segment's K range for its tile, so a sum of products such as
// QKV's input gradient Σ G_p·W_p runs as one deep product instead of a
// deep one and shallow ones that each read and write C (dense B only, no
// split-K).
#extension GL_EXT_control_flow_attributes : enable
#extension GL_KHR_cooperative_matrix : require
#extension GL_NV_cooperative_matrix2 : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#include "types.glsl"
#include "matmul_push.glsl"

layout(constant_id = 0) const uint BM = 128;
layout(constant_id = 1) const uint BN = 128;
layout(constant_id = 2) const uint BK = 32;
layout(local_size_x_id = 3, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 4) const bool A_KF = true;
layout(constant_id = 5) const bool B_KF = true;
layout(constant_id = 6) const uint UNROLL = 1;
layout(constant_id = 7) const uint SEGS = 1;
layout(constant_id = 8) const uint BK2 = 16; // the fused term's K step: the device's K granularity

layout(set = 0, binding = 0, std430) readonly buffer BufA { uint16_t a16[]; };
#if B_TYPE == TYPE_NF4
// NF4 B: each K step the workgroup decodes the BN×BK tile into shared
// memory (one packed word and one scale per 8 weights, rounded to D as the
// dense dequantization rounds them) and loads it from there. The engine
// uses this for small M, where reading 4 bits per weight matters most; at
// large M it dequantizes column slabs and runs the dense variant instead
// (kernels/nf4slab.go), because this decode, in series with the driver's
// own tile staging, measured several times slower than a 16-bit B (as did
// a per-element cooperative-matrix decode function; docs/PERFORMANCE.md).
layout(set = 0, binding = 1, std430) readonly buffer BufB { uint b[]; };
layout(set = 0, binding = 5, std430) readonly buffer BufQ { float qstate[]; };
#define ROUND_TYPE D_TYPE
#include "nf4.glsl"
#else
layout(set = 0, binding = 1, std430) readonly buffer BufB { uint16_t b16[]; };
layout(set = 0, binding = 1, std430) readonly buffer BufB4 { uvec4 b128[]; };
#endif
#if C_TYPE == TYPE_F32
layout(set = 0, binding = 2, std430) buffer BufC { float c[]; };
#define C_ELEM float
#else
layout(set = 0, binding = 2, std430) buffer BufC { uint16_t c[]; };
#define C_ELEM float16_t
#endif
layout(set = 0, binding = 3, std430) readonly buffer BufA2 { float a2[]; };
layout(set = 0, binding = 4, std430) readonly buffer BufB2 { uint16_t b2[]; };
#if B_TYPE != TYPE_NF4
layout(set = 0, binding = 6, std430) readonly buffer BufA_1 { uint16_t a16_1[]; };
layout(set = 0, binding = 7, std430) readonly buffer BufB_1 { uint16_t b16_1[]; };
layout(set = 0, binding = 8, std430) readonly buffer BufA2_1 { float a2_1[]; };
layout(set = 0, binding = 9, std430) readonly buffer BufB2_1 { uint16_t b2_1[]; };
layout(set = 0, binding = 10, std430) readonly buffer BufA_2 { uint16_t a16_2[]; };
layout(set = 0, binding = 11, std430) readonly buffer BufB_2 { uint16_t b16_2[]; };
layout(set = 0, binding = 12, std430) readonly buffer BufA2_2 { float a2_2[]; };
layout(set = 0, binding = 13, std430) readonly buffer BufB2_2 { uint16_t b2_2[]; };
#endif

#if B_TYPE == TYPE_NF4
// The staged B tile in uvec4 units, in the weight's memory order ([BN][BK]
// when B_KF, else [BK][BN]), rows padded by one uvec4 against bank
// conflicts.
const uint B_ROWS = B_KF ? BN : BK, B_COLS = B_KF ? BK : BN;
const uint B_STRIDE = B_COLS / 8 + 1;
shared uvec4 shb[B_ROWS * B_STRIDE];
#include "coop_stage.glsl"
#endif

#define ACC coopmat<float, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator>
#define MAT_A coopmat<float16_t, gl_ScopeWorkgroup, BM, BK, gl_MatrixUseA>
#define MAT_B coopmat<float16_t, gl_ScopeWorkgroup, BK, BN, gl_MatrixUseB>
#define CLAMP gl_CooperativeMatrixClampModeConstantNV
#define LT_CLAMP tensorLayoutNV<2, CLAMP>
#define LC_CLAMP createTensorLayoutNV(2, CLAMP)
#define LC_PLAIN createTensorLayoutNV(2)

// One K step at k with A and B read from buffers abuf and bbuf through
// layouts la and lb (memory order: A [M,K] when A_KF else [K,M]; B [N,K]
// when B_KF else [K,N]); tr transposes the operands whose memory order is
// not the use's.
#define K_STEP(abuf, bbuf, la, lb, k, kend)                                                               \
	{                                                                                                     \
		MAT_A ma;                                                                                         \
		MAT_B mb;                                                                                         \
		if (A_KF) {                                                                                       \
			coopMatLoadTensorNV(ma, abuf, 0, sliceTensorLayoutNV(la, m0, BM, k, BK));                     \
		} else {                                                                                          \
			coopMatLoadTensorNV(ma, abuf, 0, sliceTensorLayoutNV(la, k, BK, m0, BM), tr);                 \
		}                                                                                                 \
		LOAD_B(mb, bbuf, lb, k, kend)                                                                     \
		sum = coopMatMulAdd(ma, mb, sum);                                                                 \
		B_DONE                                                                                            \
	}

// K loop over [k0, kend): groups of UNROLL steps, unrolled, then the rest.
#define K_LOOP(abuf, bbuf, la, lb, k0, kend)                                                              \
	{                                                                                                     \
		uint k = (k0);                                                                                    \
		for (; k + UNROLL * BK <= (kend);) {                                                              \
			[[unroll]] for (uint u = 0; u < UNROLL; ++u) {                                                \
				K_STEP(abuf, bbuf, la, lb, k, kend)                                                       \
				k += BK;                                                                                  \
			}                                                                                             \
		}                                                                                                 \
		for (; k < (kend); k += BK) {                                                                     \
			K_STEP(abuf, bbuf, la, lb, k, kend)                                                           \
		}                                                                                                 \
	}

// The same K range one step at a time: the clamped loop serves only edge
// tiles, unaligned rows and a product's last partial K step, so it stays
// rolled, which keeps each kernel's code (and the driver's compile time)
// near half of what a second unrolled copy costs.
#define K_ROLLED(abuf, bbuf, la, lb, k0, kend)                                                            \
	for (uint k = (k0); k < (kend); k += BK) {                                                            \
		K_STEP(abuf, bbuf, la, lb, k, kend)                                                               \
	}

// LOOP over [k0, kend) through layouts of type LT made by LC, with the
// operands' dimensions and the row strides a_ld and b_ld.
#define SEG_LOOP(LOOP, LT, LC, abuf, bbuf, k0, kend, a_ld, b_ld)                                          \
	{                                                                                                     \
		LT la = LC;                                                                                       \
		LT lb = LC;                                                                                       \
		la = A_KF ? setTensorLayoutDimensionNV(la, pc.M, kend) : setTensorLayoutDimensionNV(la, kend, pc.M); \
		lb = B_KF ? setTensorLayoutDimensionNV(lb, pc.N, kend) : setTensorLayoutDimensionNV(lb, kend, pc.N); \
		la = setTensorLayoutStrideNV(la, a_ld, 1);                                                        \
		lb = setTensorLayoutStrideNV(lb, b_ld, 1);                                                        \
		LOOP(abuf, bbuf, la, lb, k0, kend)                                                                \
	}

// One segment's K range [kbeg, kend) of A and B in abuf and bbuf, whose
// rows (along the non-contiguous index) are a_ld0 and b_ld0 apart. A tile
// wholly in range with 16-byte aligned rows runs its whole K steps on
// unclamped layouts, which the driver compiles to wider loads; the last
// partial step, and every step of the other tiles, clamp.
#define SEGMENT(abuf, bbuf, kbeg, kend, a_ld0, b_ld0)                                                     \
	{                                                                                                     \
		uint a_ld = (a_ld0), b_ld = (b_ld0);                                                              \
		uint kfull = (kbeg);                                                                              \
		const bool inside = m0 + BM <= pc.M && n0 + BN <= pc.N &&                                         \
		                    (A_KF || (m0 % 8u) == 0u) && (B_KF || (n0 % 8u) == 0u);                       \
		if (inside && (a_ld % 8u) == 0u && (b_ld % 8u) == 0u && ((kbeg) % 8u) == 0u) {                    \
			kfull = (kend) - ((kend) - (kbeg)) % BK;                                                      \
			SEG_LOOP(K_LOOP, tensorLayoutNV<2>, LC_PLAIN, abuf, bbuf, (kbeg) & ~7u, kfull, a_ld & ~7u, b_ld & ~7u) \
		}                                                                                                 \
		if (kfull < (kend)) {                                                                             \
			SEG_LOOP(K_ROLLED, LT_CLAMP, LC_CLAMP, abuf, bbuf, kfull, kend, a_ld, b_ld)                   \
		}                                                                                                 \
	}

// One fused term alpha2·A2·B2 (k2 columns of A2 in f32, rows a2_ld apart;
// B2 from element b2_off, rows b2_ld apart; a2_rows/b2_rows: their
// column index is the unit stride), BK2 columns a step: the rank is small,
// so a BK-deep step would mostly multiply clamped zeros. alpha2·A2 is
// rounded to D, as the scalar kernel and PyTorch's bf16 do. A tile wholly
// in range with 16-byte aligned rows reads through unclamped layouts,
// which the driver compiles to wide loads instead of per-element checks;
// the rest clamp (columns past k2 read 0).
#define LORA_STEPS(LT, LC, a2buf, b2buf, k2, alpha2, a2_ld, b2_ld, b2_off)                                     \
	{                                                                                                     \
		LT l2a = LC;                                                                                      \
		LT l2b = LC;                                                                                      \
		l2a = a2_rows ? setTensorLayoutDimensionNV(l2a, pc.M, k2) : setTensorLayoutDimensionNV(l2a, k2, pc.M); \
		l2a = setTensorLayoutStrideNV(l2a, a2_ld, 1);                                                     \
		l2b = b2_rows ? setTensorLayoutDimensionNV(l2b, k2, pc.N) : setTensorLayoutDimensionNV(l2b, pc.N, k2); \
		l2b = setTensorLayoutStrideNV(l2b, b2_ld, 1);                                                     \
		for (uint j = 0; j < (k2); j += BK2) {                                                            \
			coopmat<float, gl_ScopeWorkgroup, BM, BK2, gl_MatrixUseA> fa;                                 \
			coopmat<float16_t, gl_ScopeWorkgroup, BK2, BN, gl_MatrixUseB> mb;                             \
			if (a2_rows) {                                                                                \
				coopMatLoadTensorNV(fa, a2buf, 0, sliceTensorLayoutNV(l2a, m0, BM, j, BK2));              \
			} else {                                                                                      \
				coopMatLoadTensorNV(fa, a2buf, 0, sliceTensorLayoutNV(l2a, j, BK2, m0, BM), tr);          \
			}                                                                                             \
			if (b2_rows) {                                                                                \
				coopMatLoadTensorNV(mb, b2buf, b2_off, sliceTensorLayoutNV(l2b, j, BK2, n0, BN));         \
			} else {                                                                                      \
				coopMatLoadTensorNV(mb, b2buf, b2_off, sliceTensorLayoutNV(l2b, n0, BN, j, BK2), tr);     \
			}                                                                                             \
			coopmat<float16_t, gl_ScopeWorkgroup, BM, BK2, gl_MatrixUseA> ma =                            \
			    coopmat<float16_t, gl_ScopeWorkgroup, BM, BK2, gl_MatrixUseA>(fa * (alpha2));             \
			sum = coopMatMulAdd(ma, mb, sum);                                                             \
		}                                                                                                 \
	}
#define LORA_TERM(a2buf, b2buf, k2, alpha2, a2_ld0, b2_ld0, b2_off0)                                       \
	{                                                                                                     \
		uint a2_ld = (a2_ld0), b2_ld = (b2_ld0), b2_off = (b2_off0);                                      \
		const bool in2 = m0 + BM <= pc.M && n0 + BN <= pc.N && ((k2) % BK2) == 0u &&                     \
		                 (a2_rows || (m0 % 4u) == 0u) && (b2_rows || (n0 % 8u) == 0u);                    \
		if (in2 && (a2_ld % 4u) == 0u && (b2_ld % 8u) == 0u && (b2_off % 8u) == 0u) {                     \
			a2_ld &= ~3u;                                                                                 \
			b2_ld &= ~7u;                                                                                 \
			b2_off &= ~7u;                                                                                \
			LORA_STEPS(tensorLayoutNV<2>, LC_PLAIN, a2buf, b2buf, k2, alpha2, a2_ld, b2_ld, b2_off)                 \
		} else {                                                                                          \
			LORA_STEPS(LT_CLAMP, LC_CLAMP, a2buf, b2buf, k2, alpha2, a2_ld, b2_ld, b2_off)                          \
		}                                                                                                 \
	}

#if B_TYPE == TYPE_NF4
// Decode the tile at (n0, k) into shb and load it; B_DONE keeps the next
// step's decode from overwriting shb before every invocation has used it.
#define LOAD_B(mb, bbuf, lb, k, kend)                                                                     \
	for (uint c = gl_LocalInvocationIndex; c < B_ROWS * B_COLS / 8; c += gl_WorkGroupSize.x) {            \
		uint g, n;                                                                                        \
		b_chunk(c, n0, k, kend, g, n);                                                                    \
		shb[chunk_word(c, B_COLS / 8, B_STRIDE)] = n == 0u ? uvec4(0) : load_b_chunk(g, n);               \
	}                                                                                                     \
	barrier();                                                                                            \
	coopMatLoad(mb, shb, 0, B_STRIDE, B_KF ? gl_CooperativeMatrixLayoutColumnMajor : gl_CooperativeMatrixLayoutRowMajor);
#define B_DONE barrier();
#else
#define LOAD_B(mb, bbuf, lb, k, kend)                                                                     \
	if (B_KF) {                                                                                           \
		coopMatLoadTensorNV(mb, bbuf, 0, sliceTensorLayoutNV(lb, n0, BN, k, BK), tr);                     \
	} else {                                                                                              \
		coopMatLoadTensorNV(mb, bbuf, 0, sliceTensorLayoutNV(lb, k, BK, n0, BN));                         \
	}
#define B_DONE
#endif

// beta·C (when beta ≠ 0) added to the tile, then the tile stored, through
// a layout of type LT made by LC, rows c_rs apart, from element base.
#define STORE_C(LT, LC, c_rs, base)                                                                       \
	{                                                                                                     \
		LT lc = LC;                                                                                       \
		lc = setTensorLayoutDimensionNV(lc, pc.M, pc.N);                                                  \
		lc = setTensorLayoutStrideNV(lc, c_rs, 1);                                                        \
		if (pc.beta != 0.0) {                                                                             \
			coopmat<C_ELEM, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator> old;                      \
			coopMatLoadTensorNV(old, c, base, sliceTensorLayoutNV(lc, m0, BM, n0, BN));                   \
			sum = sum + ACC(old) * pc.beta;                                                               \
		}                                                                                                 \
		coopmat<C_ELEM, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator> outm =                        \
		    coopmat<C_ELEM, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator>(sum);                     \
		coopMatStoreTensorNV(outm, c, base, sliceTensorLayoutNV(lc, m0, BM, n0, BN));                     \
	}

void main() {
	const uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
	const uint kbeg = gl_WorkGroupID.z * pc.k_split;
	const uint kend = min(pc.K, kbeg + pc.k_split);
	tensorViewNV<2, false, 1, 0> tr = createTensorViewNV(2, false, 1, 0);

	ACC sum = ACC(0.0);

	// Operand strides along the non-contiguous index; the other segments
	// are whole contiguous tensors.
#if B_TYPE == TYPE_NF4
	SEGMENT(a16, b, kbeg, kend, A_KF ? pc.a_rs : pc.a_cs, B_KF ? pc.b_cs : pc.b_rs)
#else
	SEGMENT(a16, b16, kbeg, kend, A_KF ? pc.a_rs : pc.a_cs, B_KF ? pc.b_cs : pc.b_rs)
	if (SEGS > 1) {
		SEGMENT(a16_1, b16_1, 0u, pc.seg_k[0], A_KF ? pc.seg_k[0] : pc.M, B_KF ? pc.seg_k[0] : pc.N)
	}
	if (SEGS > 2) {
		SEGMENT(a16_2, b16_2, 0u, pc.seg_k[1], A_KF ? pc.seg_k[1] : pc.M, B_KF ? pc.seg_k[1] : pc.N)
	}
#endif

	if (pc.alpha != 1.0) {
		sum = sum * pc.alpha;
	}

	// The fused LoRA terms (first z-slice only). A2 and B2 have a unit
	// stride in one index (the Go side checks), the same in every segment.
	const bool a2_rows = pc.a2_cs == 1u, b2_rows = pc.b2_cs == 1u;
	if (gl_WorkGroupID.z == 0u && pc.K2 > 0u) {
		LORA_TERM(a2, b2, pc.K2, pc.alpha2, a2_rows ? pc.a2_rs : pc.a2_cs, b2_rows ? pc.b2_rs : pc.b2_cs, pc.b2_off)
	}
#if B_TYPE != TYPE_NF4
	if (SEGS > 1 && pc.seg_r[0] > 0u) {
		LORA_TERM(a2_1, b2_1, pc.seg_r[0], pc.seg_alpha2[0], a2_rows ? pc.seg_r[0] : pc.M, b2_rows ? pc.N : pc.seg_r[0], 0u)
	}
	if (SEGS > 2 && pc.seg_r[1] > 0u) {
		LORA_TERM(a2_2, b2_2, pc.seg_r[1], pc.seg_alpha2[1], a2_rows ? pc.seg_r[1] : pc.M, b2_rows ? pc.N : pc.seg_r[1], 0u)
	}
#endif

	// Epilogue: beta·C, then the store; split-K slices write their own
	// [M, N] plane of the f32 scratch. A tile wholly in range with 16-byte
	// aligned rows goes through an unclamped layout (wide accesses).
	const uint cbase = pc.c_off + gl_WorkGroupID.z * pc.M * pc.c_rs;
	const uint CA = 16 / (C_TYPE == TYPE_F32 ? 4 : 2); // elements per 16 bytes
	if (m0 + BM <= pc.M && n0 + BN <= pc.N && (pc.c_rs % CA) == 0u && (cbase % CA) == 0u) {
		STORE_C(tensorLayoutNV<2>, LC_PLAIN, pc.c_rs & ~(CA - 1u), cbase & ~(CA - 1u))
	} else {
		STORE_C(LT_CLAMP, LC_CLAMP, pc.c_rs, cbase)
	}
}
