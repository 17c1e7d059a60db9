package shaders

import "unsafe"

// The push-constant blocks of the shaders, mirrored in Go. Each struct is
// laid out like its std430 block (4-byte scalars only); the size guards
// below fail to compile when a struct and its block drift apart, and the
// variant table takes each family's PushSize from them.

// MatmulPush mirrors include/matmul_push.glsl (every matmul kernel):
// C = Alpha·op(A)·op(B) + Alpha2·A2·B2 + Beta·C with element strides.
type MatmulPush struct {
	M, N, K, K2         uint32
	ARs, ACs, BRs, BCs  uint32
	CRs                 uint32
	A2Rs, A2Cs          uint32
	B2Rs, B2Cs          uint32
	Alpha, Beta, Alpha2 float32
	Blocksize, KSplit   uint32
	COff, B2Off         uint32
	// K segments 1 and 2 of the workgroup-scope kernel (its SEGS
	// specialization constant): depth, fused-term rank, fused-term scale.
	SegK, SegR [2]uint32
	SegAlpha2  [2]float32
}

// SplitKPush mirrors splitk_reduce.comp's block.
type SplitKPush struct {
	M, N, CRs, S uint32
	Beta         float32
}

// AddPush mirrors add.comp's block.
type AddPush struct {
	Rows, Cols uint32
	Alpha      float32
}

// GatedPush mirrors gated.comp's block.
type GatedPush struct{ Count, Row uint32 }

// NF4DequantPush mirrors nf4_dequant.comp's block.
type NF4DequantPush struct{ Count, Row, Blocksize, Src0, SrcLd, Cols uint32 }

// NF4QuantizePush mirrors nf4_quantize.comp's block.
type NF4QuantizePush struct {
	Count, Blocksize, NBlocks, GX uint32
	Thr                           [15]float32
}

// NF4AbsmaxPush mirrors nf4_absmax.comp's block.
type NF4AbsmaxPush struct {
	Count, Row, NestedBlocksize uint32
	Offset                      float32
}

// FillPush mirrors fill.comp's block.
type FillPush struct{ Count, Value uint32 }

// AdamWPush mirrors adamw.comp's block: the element count, whether to
// apply the clip coefficient, and the step's f32 scalars (see adamw.comp).
type AdamWPush struct {
	Count, Clip                                 uint32
	Decay, W1, Beta2, C2, NegStep, BC2Sqrt, Eps float32
}

// SumSqPush mirrors sumsq.comp's block (both passes).
type SumSqPush struct {
	Count, Base, Clip uint32
	MaxNorm           float32
}

// GradAccPush mirrors gradacc.comp's block.
type GradAccPush struct {
	Count uint32
	Alpha float32
}

var (
	_ [104]byte = [unsafe.Sizeof(MatmulPush{})]byte{}
	_ [20]byte  = [unsafe.Sizeof(SplitKPush{})]byte{}
	_ [12]byte  = [unsafe.Sizeof(AddPush{})]byte{}
	_ [8]byte   = [unsafe.Sizeof(GatedPush{})]byte{}
	_ [24]byte  = [unsafe.Sizeof(NF4DequantPush{})]byte{}
	_ [76]byte  = [unsafe.Sizeof(NF4QuantizePush{})]byte{}
	_ [16]byte  = [unsafe.Sizeof(NF4AbsmaxPush{})]byte{}
	_ [8]byte   = [unsafe.Sizeof(FillPush{})]byte{}
	_ [36]byte  = [unsafe.Sizeof(AdamWPush{})]byte{}
	_ [16]byte  = [unsafe.Sizeof(SumSqPush{})]byte{}
	_ [8]byte   = [unsafe.Sizeof(GradAccPush{})]byte{}
)

func sizeOf[T any]() int { var v T; return int(unsafe.Sizeof(v)) }

// PeakFMAPush mirrors peak_fma.comp's block.
type PeakFMAPush struct {
	Iters, Slots uint32
	M, C         float32
}

// PeakCoopPush mirrors the block of peak_coopmat.comp and peak_cm2.comp
// (the latter reads no strides).
type PeakCoopPush struct{ Iters, Slots, AStride, BStride uint32 }

// PeakTilePush mirrors peak_tile.comp's block: Zero must be 0 (the tile's
// base word is iteration·Zero, which keeps the loads inside the loop).
type PeakTilePush struct{ Iters, Slots, Zero, Pad uint32 }

// PeakDirectPush mirrors peak_direct.comp's block: C = A·Bᵀ of M×N×K.
type PeakDirectPush struct{ M, N, K, Pad uint32 }

// PeakCopyPush mirrors peak_copy.comp's block.
type PeakCopyPush struct{ N uint32 }

// PeakReadPush mirrors peak_read.comp's block: the buffer holds Mask+1
// elements (a power of two); each invocation reads Reads (a multiple of 4).
type PeakReadPush struct{ Mask, Reads uint32 }

var (
	_ [16]byte = [unsafe.Sizeof(PeakFMAPush{})]byte{}
	_ [16]byte = [unsafe.Sizeof(PeakCoopPush{})]byte{}
	_ [16]byte = [unsafe.Sizeof(PeakTilePush{})]byte{}
	_ [16]byte = [unsafe.Sizeof(PeakDirectPush{})]byte{}
	_ [4]byte  = [unsafe.Sizeof(PeakCopyPush{})]byte{}
	_ [8]byte  = [unsafe.Sizeof(PeakReadPush{})]byte{}
)
