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
// a rolled loop waits for each step's loads before its multiply).
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

// One K step at k with A and B read through layouts la and lb (memory
// order: A [M,K] when A_KF else [K,M]; B [N,K] when B_KF else [K,N]); tr
// transposes the operands whose memory order is not the use's.
#define K_STEP(la, lb, k, kend)                                                                           \
	{                                                                                                     \
		MAT_A ma;                                                                                         \
		MAT_B mb;                                                                                         \
		if (A_KF) {                                                                                       \
			coopMatLoadTensorNV(ma, a16, 0, sliceTensorLayoutNV(la, m0, BM, k, BK));                      \
		} else {                                                                                          \
			coopMatLoadTensorNV(ma, a16, 0, sliceTensorLayoutNV(la, k, BK, m0, BM), tr);                  \
		}                                                                                                 \
		LOAD_B(mb, lb, k, kend)                                                                           \
		sum = coopMatMulAdd(ma, mb, sum);                                                                 \
		B_DONE                                                                                            \
	}

// K loop over [k0, kend): groups of UNROLL steps, unrolled, then the rest.
#define K_LOOP(la, lb, k0, kend)                                                                          \
	{                                                                                                     \
		uint k = (k0);                                                                                    \
		for (; k + UNROLL * BK <= (kend);) {                                                              \
			[[unroll]] for (uint u = 0; u < UNROLL; ++u) {                                                \
				K_STEP(la, lb, k, kend)                                                                   \
				k += BK;                                                                                  \
			}                                                                                             \
		}                                                                                                 \
		for (; k < (kend); k += BK) {                                                                     \
			K_STEP(la, lb, k, kend)                                                                       \
		}                                                                                                 \
	}

#if B_TYPE == TYPE_NF4
// Decode the tile at (n0, k) into shb and load it; B_DONE keeps the next
// step's decode from overwriting shb before every invocation has used it.
#define LOAD_B(mb, lb, k, kend)                                                                           \
	for (uint c = gl_LocalInvocationIndex; c < B_ROWS * B_COLS / 8; c += gl_WorkGroupSize.x) {            \
		uint g, n;                                                                                        \
		b_chunk(c, n0, k, kend, g, n);                                                                    \
		shb[chunk_word(c, B_COLS / 8, B_STRIDE)] = n == 0u ? uvec4(0) : load_b_chunk(g, n);               \
	}                                                                                                     \
	barrier();                                                                                            \
	coopMatLoad(mb, shb, 0, B_STRIDE, B_KF ? gl_CooperativeMatrixLayoutColumnMajor : gl_CooperativeMatrixLayoutRowMajor);
#define B_DONE barrier();
#else
#define LOAD_B(mb, lb, k, kend)                                                                           \
	if (B_KF) {                                                                                           \
		coopMatLoadTensorNV(mb, b16, 0, sliceTensorLayoutNV(lb, n0, BN, k, BK), tr);                      \
	} else {                                                                                              \
		coopMatLoadTensorNV(mb, b16, 0, sliceTensorLayoutNV(lb, k, BK, n0, BN));                          \
	}
#define B_DONE
#endif

void main() {
	const uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
	const uint kbeg = gl_WorkGroupID.z * pc.k_split;
	const uint kend = min(pc.K, kbeg + pc.k_split);
	tensorViewNV<2, false, 1, 0> tr = createTensorViewNV(2, false, 1, 0);

	ACC sum = ACC(0.0);

	// Operand strides along the non-contiguous index.
	uint a_ld = A_KF ? pc.a_rs : pc.a_cs;
	uint b_ld = B_KF ? pc.b_cs : pc.b_rs;
	const bool inside = m0 + BM <= pc.M && n0 + BN <= pc.N && (kend - kbeg) % BK == 0 &&
	                    (A_KF || (m0 % 8u) == 0u) && (B_KF || (n0 % 8u) == 0u);
	if (inside && (a_ld % 8u) == 0u && (b_ld % 8u) == 0u && (kbeg % 8u) == 0u) {
		// Rows start 16-byte aligned: say so, so that the loads widen.
		a_ld &= ~7u;
		b_ld &= ~7u;
		tensorLayoutNV<2> la = createTensorLayoutNV(2);
		tensorLayoutNV<2> lb = createTensorLayoutNV(2);
		la = A_KF ? setTensorLayoutDimensionNV(la, pc.M, kend) : setTensorLayoutDimensionNV(la, kend, pc.M);
		lb = B_KF ? setTensorLayoutDimensionNV(lb, pc.N, kend) : setTensorLayoutDimensionNV(lb, kend, pc.N);
		la = setTensorLayoutStrideNV(la, a_ld, 1);
		lb = setTensorLayoutStrideNV(lb, b_ld, 1);
		K_LOOP(la, lb, kbeg & ~7u, kend)
	} else {
		tensorLayoutNV<2, CLAMP> la = createTensorLayoutNV(2, CLAMP);
		tensorLayoutNV<2, CLAMP> lb = createTensorLayoutNV(2, CLAMP);
		la = A_KF ? setTensorLayoutDimensionNV(la, pc.M, kend) : setTensorLayoutDimensionNV(la, kend, pc.M);
		lb = B_KF ? setTensorLayoutDimensionNV(lb, pc.N, kend) : setTensorLayoutDimensionNV(lb, kend, pc.N);
		la = setTensorLayoutStrideNV(la, a_ld, 1);
		lb = setTensorLayoutStrideNV(lb, b_ld, 1);
		K_LOOP(la, lb, kbeg, kend)
	}

	if (pc.alpha != 1.0) {
		sum = sum * pc.alpha;
	}

	// The fused LoRA term (first z-slice only): alpha2·A2 is rounded to D,
	// as the scalar kernel and PyTorch's bf16 do; columns past K2 read 0.
	// A2 and B2 have a unit stride in one index (the Go side checks).
	if (gl_WorkGroupID.z == 0u && pc.K2 > 0u) {
		tensorLayoutNV<2, CLAMP> l2a = createTensorLayoutNV(2, CLAMP);
		tensorLayoutNV<2, CLAMP> l2b = createTensorLayoutNV(2, CLAMP);
		const bool a2_rows = pc.a2_cs == 1u, b2_rows = pc.b2_cs == 1u;
		l2a = a2_rows ? setTensorLayoutDimensionNV(l2a, pc.M, pc.K2) : setTensorLayoutDimensionNV(l2a, pc.K2, pc.M);
		l2a = setTensorLayoutStrideNV(l2a, a2_rows ? pc.a2_rs : pc.a2_cs, 1);
		l2b = b2_rows ? setTensorLayoutDimensionNV(l2b, pc.K2, pc.N) : setTensorLayoutDimensionNV(l2b, pc.N, pc.K2);
		l2b = setTensorLayoutStrideNV(l2b, b2_rows ? pc.b2_rs : pc.b2_cs, 1);
		for (uint j = 0; j < pc.K2; j += BK) {
			coopmat<float, gl_ScopeWorkgroup, BM, BK, gl_MatrixUseA> fa;
			MAT_B mb;
			if (a2_rows) {
				coopMatLoadTensorNV(fa, a2, 0, sliceTensorLayoutNV(l2a, m0, BM, j, BK));
			} else {
				coopMatLoadTensorNV(fa, a2, 0, sliceTensorLayoutNV(l2a, j, BK, m0, BM), tr);
			}
			if (b2_rows) {
				coopMatLoadTensorNV(mb, b2, pc.b2_off, sliceTensorLayoutNV(l2b, j, BK, n0, BN));
			} else {
				coopMatLoadTensorNV(mb, b2, pc.b2_off, sliceTensorLayoutNV(l2b, n0, BN, j, BK), tr);
			}
			MAT_A ma = MAT_A(fa * pc.alpha2);
			sum = coopMatMulAdd(ma, mb, sum);
		}
	}

	// Epilogue: beta·C, then the store; split-K slices write their own
	// [M, N] plane of the f32 scratch.
	tensorLayoutNV<2, CLAMP> lc = createTensorLayoutNV(2, CLAMP);
	lc = setTensorLayoutDimensionNV(lc, pc.M, pc.N);
	lc = setTensorLayoutStrideNV(lc, pc.c_rs, 1);
	const uint cbase = pc.c_off + gl_WorkGroupID.z * pc.M * pc.c_rs;
	if (pc.beta != 0.0) {
		coopmat<C_ELEM, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator> old;
		coopMatLoadTensorNV(old, c, cbase, sliceTensorLayoutNV(lc, m0, BM, n0, BN));
		sum = sum + ACC(old) * pc.beta;
	}
	coopmat<C_ELEM, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator> outm =
	    coopmat<C_ELEM, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator>(sum);
	coopMatStoreTensorNV(outm, c, cbase, sliceTensorLayoutNV(lc, m0, BM, n0, BN));
}
