package shaders

import (
	"github.com/vklora/vklora/activation"
	"github.com/vklora/vklora/dtype"
)

// Key names one variant of the registry. Each shader family has its own key
// type, shared by the variant table (Variants) and the dispatch code, so a
// variant is named in one place and a call site cannot misspell one: the
// tests check that every key the dispatchers can form has a compiled module.
// The interface is sealed; only this package's key types satisfy it.
type Key interface {
	// Name is the variant's registry and .spv name.
	Name() string
	sealed()
}

// MatmulKernel is the algorithm of a matmul variant: which source it is
// built from.
type MatmulKernel uint8

const (
	// MatmulTiled is the scalar tiled kernel (matmul.comp).
	MatmulTiled MatmulKernel = iota
	// MatmulNarrow is the kernel for outputs with a side of at most 32
	// (matmul_narrow.comp): the LoRA rank products.
	MatmulNarrow
	// MatmulCoopMat is the subgroup-scope cooperative-matrix kernel
	// (VK_KHR_cooperative_matrix, matmul_coopmat.comp).
	MatmulCoopMat
	// MatmulCM2 is the workgroup-scope cooperative-matrix kernel
	// (VK_NV_cooperative_matrix2, matmul_cm2.comp).
	MatmulCM2
)

// suffix is the kernel's name suffix.
func (k MatmulKernel) suffix() string {
	return [...]string{"", "_narrow", "_coopmat", "_cm2"}[k]
}

// String names the kernel for messages and tests.
func (k MatmulKernel) String() string {
	return [...]string{"tiled", "narrow", "coopmat", "cm2"}[k]
}

// MatmulKey is one matmul variant: the kernel, the layer dtype D and which
// operands differ from D. A32, B32 and C32 mark f32 operands (the [M, r]
// LoRA intermediates and split-K partials); NF4 marks a 4-bit B.
type MatmulKey struct {
	Kernel             MatmulKernel
	D                  dtype.DType
	A32, B32, NF4, C32 bool
	// FM, FN are the subgroup-scope kernel's fragments per subgroup (one of
	// CoopFrags); zero for the other kernels.
	FM, FN uint8
}

// CoopFrags are the fragment grids (FM×FN accumulators per subgroup) the
// subgroup-scope kernel is built for.
var CoopFrags = [][2]uint8{{2, 2}, {4, 2}, {2, 4}, {4, 4}}

// Name is matmul_<D>[_a32][_b32][_nf4][_c32][_<kernel>][_f<FM><FN>].
func (k MatmulKey) Name() string {
	n := "matmul_" + k.D.String() + pick(k.A32, "_a32", "") + pick(k.B32, "_b32", "") +
		pick(k.NF4, "_nf4", "") + pick(k.C32, "_c32", "") + k.Kernel.suffix()
	if k.FM != 0 || k.FN != 0 {
		n += "_f" + string(rune('0'+k.FM)) + string(rune('0'+k.FN))
	}
	return n
}

// SplitKReduceKey is the split-K reduction into a C of dtype C.
type SplitKReduceKey struct{ C dtype.DType }

// Name is splitk_reduce_<C>.
func (k SplitKReduceKey) Name() string { return "splitk_reduce_" + k.C.String() }

// GatedKey is the gated MLP's elementwise kernel h = act(e)·g (or its
// backward) for storage dtype D.
type GatedKey struct {
	Act  activation.Activation
	D    dtype.DType
	Back bool
}

// Name is <act>[_back]_<D>.
func (k GatedKey) Name() string { return variantName(k.Act.String(), k.Back, k.D.String(), "") }

// AddKey is the elementwise dst += alpha·src (Bias false) or the row bias
// Y[m, n] += bias[n] (Bias true) for dtype D.
type AddKey struct {
	D    dtype.DType
	Bias bool
}

// Name is add_<D> or add_bias_<D>.
func (k AddKey) Name() string {
	if k.Bias {
		return "add_bias_" + k.D.String()
	}
	return "add_" + k.D.String()
}

// NF4Op is an NF4 kernel outside the matmul.
type NF4Op uint8

const (
	NF4Dequant  NF4Op = iota + 1 // dense decoding of a region of a weight
	NF4Quantize                  // blockwise quantization of a dense weight
	NF4Absmax                    // decoding of double-quantized scales (D is f32)
)

// NF4Key is an NF4 kernel for the dense side's dtype D.
type NF4Key struct {
	Op NF4Op
	D  dtype.DType
}

// Name is nf4_dequant_<D>, nf4_quantize_<D> or nf4_absmax_f32.
func (k NF4Key) Name() string {
	op := "nf4_op?"
	switch k.Op {
	case NF4Dequant:
		op = "nf4_dequant"
	case NF4Quantize:
		op = "nf4_quantize"
	case NF4Absmax:
		op = "nf4_absmax"
	}
	return op + "_" + k.D.String()
}

// FillKey is the 32-bit word fill kernel (fill_u32).
type FillKey struct{}

// Name is fill_u32.
func (FillKey) Name() string { return "fill_u32" }

func (MatmulKey) sealed()       {}
func (SplitKReduceKey) sealed() {}
func (GatedKey) sealed()        {}
func (AddKey) sealed()          {}
func (NF4Key) sealed()          {}
func (FillKey) sealed()         {}

// AdamWKey is the AdamW update of package optim (adamw.comp) for a
// parameter stored in P, with its gradient stored in P or, G32, in f32 (an
// f32 accumulator of a 16-bit parameter's gradients; f32 parameters have
// no G32 form). 16-bit parameters keep an f32 master copy.
type AdamWKey struct {
	P   dtype.DType
	G32 bool
}

// Name is adamw_<P>[_g32].
func (k AdamWKey) Name() string { return "adamw_" + k.P.String() + pick(k.G32, "_g32", "") }

// SumSqKey is a pass of the global gradient norm of package optim
// (sumsq.comp): the per-workgroup sums of squares of a gradient stored in
// D, or, Final (D is f32), the reduction of those partial sums into the
// norm and the clip coefficient.
type SumSqKey struct {
	D     dtype.DType
	Final bool
}

// Name is sumsq_<D> or sumsq_f32_final.
func (k SumSqKey) Name() string { return "sumsq_" + k.D.String() + pick(k.Final, "_final", "") }

// GradAccKey is the f32 gradient accumulation acc += alpha·src of package
// optim (gradacc.comp) for src stored in D.
type GradAccKey struct{ D dtype.DType }

// Name is gradacc_<D>.
func (k GradAccKey) Name() string { return "gradacc_" + k.D.String() }

// OptimKeys lists the kernels of package optim, in table order.
func OptimKeys() []Key {
	var ks []Key
	for _, d := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
		ks = append(ks, AdamWKey{P: d})
		if d != dtype.F32 {
			ks = append(ks, AdamWKey{P: d, G32: true})
		}
		ks = append(ks, SumSqKey{D: d}, GradAccKey{D: d})
	}
	return append(ks, SumSqKey{D: dtype.F32, Final: true})
}

func (AdamWKey) sealed()   {}
func (SumSqKey) sealed()   {}
func (GradAccKey) sealed() {}

// PeakKind is a ceiling lorabench peak measures.
type PeakKind uint8

const (
	PeakFMA     PeakKind = iota + 1 // scalar fp32 FMA chains
	PeakCopy                        // 16-byte device-memory copy
	PeakCoopMat                     // register-resident subgroup-scope cooperative matrices
	PeakCM2                         // register-resident workgroup-scope cooperative matrices
	PeakTile                        // the subgroup-scope matmul's tile loop, fed from shared memory
	PeakDirect                      // the subgroup-scope matmul without shared memory
	PeakRead                        // 16-byte reads of a cache-resident buffer
)

// PeakInput is the input component type of a peak kernel.
type PeakInput string

const (
	PeakF32  PeakInput = "f32"
	PeakU32  PeakInput = "u32"
	PeakF16  PeakInput = "f16"
	PeakBF16 PeakInput = "bf16"
	PeakI8   PeakInput = "i8"
	PeakU8   PeakInput = "u8"
)

// PeakKey is a kernel of `lorabench peak`: kind, input type and, for the
// f16 cooperative kernel, an f16 accumulator (C16) instead of f32/int32;
// for PeakTile, the fragment grid (one of CoopFrags).
type PeakKey struct {
	Kind   PeakKind
	In     PeakInput
	C16    bool
	FM, FN uint8
}

// Name is peak_fma_f32, peak_copy_u32, peak_read_u32, peak_coopmat_<in>[_c16],
// peak_cm2_<in>, peak_tile_<in>_f<FM><FN> or peak_direct_<in>_f<FM><FN>.
func (k PeakKey) Name() string {
	op := "peak_kind?"
	switch k.Kind {
	case PeakFMA:
		op = "peak_fma"
	case PeakCopy:
		op = "peak_copy"
	case PeakRead:
		op = "peak_read"
	case PeakCoopMat:
		op = "peak_coopmat"
	case PeakCM2:
		op = "peak_cm2"
	case PeakTile, PeakDirect:
		op = pick(k.Kind == PeakTile, "peak_tile", "peak_direct")
		return variantName(op, false, string(k.In), "f"+string(rune('0'+k.FM))+string(rune('0'+k.FN)))
	}
	return variantName(op, false, string(k.In), pick(k.C16, "c16", ""))
}

// PeakKeys lists every peak kernel, in table order.
func PeakKeys() []PeakKey {
	ks := []PeakKey{{Kind: PeakFMA, In: PeakF32}, {Kind: PeakCopy, In: PeakU32}, {Kind: PeakRead, In: PeakU32},
		{Kind: PeakCoopMat, In: PeakF16}, {Kind: PeakCoopMat, In: PeakF16, C16: true}, {Kind: PeakCoopMat, In: PeakBF16},
		{Kind: PeakCoopMat, In: PeakI8}, {Kind: PeakCoopMat, In: PeakU8},
		{Kind: PeakCM2, In: PeakF16}, {Kind: PeakCM2, In: PeakBF16}}
	for _, f := range CoopFrags {
		ks = append(ks, PeakKey{Kind: PeakTile, In: PeakF16, FM: f[0], FN: f[1]},
			PeakKey{Kind: PeakDirect, In: PeakF16, FM: f[0], FN: f[1]})
	}
	return ks
}

func (PeakKey) sealed() {}
