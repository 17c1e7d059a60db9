// coop_tile.glsl: the subgroup-scope matmul's shared tile and fragment
// loop (matmul_coopmat.comp), shared with peak_tile.comp, which times the
// same loop fed from a tile staged once, so that the two kernels measure
// one piece of code.
//
// The including shader declares BM, BN, BK, WM, WN, TM, TN, TK, the
// layouts A_KF and B_KF, the defines FM and FN, a local size, `shared
// uvec4 sh[]` of at least BUF_WORDS words (declared after this file, which
// sizes it) and, in main, tid, wm0, wn0 and the staging registers ra[] and
// rb[] (A_PER_THREAD and B_PER_THREAD uvec4s).
#ifndef VKLORA_COOP_TILE_GLSL
#define VKLORA_COOP_TILE_GLSL

// Shared tiles in uvec4 units (8 elements), in the operand's memory order:
// A [BM][BK] when A_KF else [BK][BM]; B [BN][BK] when B_KF else [BK][BN].
// Rows are padded by one uvec4 so that the rows one coopMatLoad reads start
// in different banks.
const uint A_ROWS = A_KF ? BM : BK, A_COLS = A_KF ? BK : BM;
const uint B_ROWS = B_KF ? BN : BK, B_COLS = B_KF ? BK : BN;
const uint A_STRIDE = A_COLS / 8 + 1, B_STRIDE = B_COLS / 8 + 1;
const uint A_WORDS = A_ROWS * A_STRIDE, B_WORDS = B_ROWS * B_STRIDE;
const uint BUF_WORDS = A_WORDS + B_WORDS;

const uint WG = gl_WorkGroupSize.x;
// Each invocation stages chunks tid, tid + WG, ...; where a tile has fewer
// chunks than a multiple of WG (a short K step on many subgroups) the last
// round is guarded. The guards fold away when WG divides the count.
const uint A_CHUNKS = A_ROWS * A_COLS / 8, B_CHUNKS = B_ROWS * B_COLS / 8;
const uint A_PER_THREAD = (A_CHUNKS + WG - 1) / WG;
const uint B_PER_THREAD = (B_CHUNKS + WG - 1) / WG;
#define A_IN(c) (A_CHUNKS % WG == 0u || (c) < A_CHUNKS)
#define B_IN(c) (B_CHUNKS % WG == 0u || (c) < B_CHUNKS)

#include "chunk_word.glsl"

// The FOR_* macros expand F for every fragment row i < FM, column j < FN,
// or pair (i, j): the fragment grid unrolled at compile time.
#if FM > 1
#define IF_M1(x) x
#else
#define IF_M1(x)
#endif
#if FM > 2
#define IF_M23(x) x
#else
#define IF_M23(x)
#endif
#if FN > 1
#define IF_N1(x) x
#else
#define IF_N1(x)
#endif
#if FN > 2
#define IF_N23(x) x
#else
#define IF_N23(x)
#endif
#define FOR_I(F) F(0) IF_M1(F(1)) IF_M23(F(2) F(3))
#define FOR_J(F) F(0) IF_N1(F(1)) IF_N23(F(2) F(3))
#define FOR_ROW(F, i) F(i, 0) IF_N1(F(i, 1)) IF_N23(F(i, 2) F(i, 3))
#define FOR_ALL(F) FOR_ROW(F, 0) IF_M1(FOR_ROW(F, 1)) IF_M23(FOR_ROW(F, 2) FOR_ROW(F, 3))

#define ACC_T coopmat<float, gl_ScopeSubgroup, TM, TN, gl_MatrixUseAccumulator>
#define DECL_ACC(i, j) ACC_T acc##i##j = ACC_T(0.0);
#define DECL_FA(i) coopmat<float16_t, gl_ScopeSubgroup, TM, TK, gl_MatrixUseA> fa##i;
#define DECL_FB(j) coopmat<float16_t, gl_ScopeSubgroup, TK, TN, gl_MatrixUseB> fb##j;
#define MMA(i, j) acc##i##j = coopMatMulAdd(fa##i, fb##j, acc##i##j);
#define SCALE(i, j) acc##i##j = acc##i##j * pc.alpha;

// Multiply the tiles staged at shared word `base` into the accumulators.
#define LOAD_FA(i)                                                                                              \
	if (A_KF) {                                                                                                 \
		coopMatLoad(fa##i, sh, (base_) + (wm0 + i * TM) * A_STRIDE + kk / 8, A_STRIDE, gl_CooperativeMatrixLayoutRowMajor); \
	} else {                                                                                                    \
		coopMatLoad(fa##i, sh, (base_) + kk * A_STRIDE + (wm0 + i * TM) / 8, A_STRIDE, gl_CooperativeMatrixLayoutColumnMajor); \
	}
#define LOAD_FB(j)                                                                                              \
	if (B_KF) {                                                                                                 \
		coopMatLoad(fb##j, sh, (base_) + A_WORDS + (wn0 + j * TN) * B_STRIDE + kk / 8, B_STRIDE, gl_CooperativeMatrixLayoutColumnMajor); \
	} else {                                                                                                    \
		coopMatLoad(fb##j, sh, (base_) + A_WORDS + kk * B_STRIDE + (wn0 + j * TN) / 8, B_STRIDE, gl_CooperativeMatrixLayoutRowMajor); \
	}
#define TILE_MMA(base)                                                                                          \
	{                                                                                                           \
		const uint base_ = (base);                                                                              \
		[[unroll]] for (uint kk = 0; kk < BK; kk += TK) {                                                       \
			FOR_I(LOAD_FA)                                                                                      \
			FOR_J(LOAD_FB)                                                                                      \
			FOR_ALL(MMA)                                                                                        \
		}                                                                                                       \
	}

// Store the staging registers ra[] and rb[] into the tile at word `base`.
#define SHARED_STORE(base)                                                                    \
	[[unroll]] for (uint i = 0; i < A_PER_THREAD; i++)                                        \
		if (A_IN(tid + i * WG))                                                               \
			sh[(base) + chunk_word(tid + i * WG, A_COLS / 8, A_STRIDE)] = ra[i];              \
	[[unroll]] for (uint i = 0; i < B_PER_THREAD; i++)                                        \
		if (B_IN(tid + i * WG))                                                               \
			sh[(base) + A_WORDS + chunk_word(tid + i * WG, B_COLS / 8, B_STRIDE)] = rb[i];

#endif
