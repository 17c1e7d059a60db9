package shaders

import "github.com/vklora/vklora/dtype"

// DropoutMode is what dropout.comp writes (see its header).
type DropoutMode uint8

const (
	DropoutForward  DropoutMode = iota // out = D(x)
	DropoutResidual                    // out = x − D(x)
	DropoutAdd                         // out += D(x)
	DropoutExpand                      // out += D(s·G·A): dX's LoRA part, never formed
)

// dropoutModes lists every DropoutMode.
var dropoutModes = []DropoutMode{DropoutForward, DropoutResidual, DropoutAdd, DropoutExpand}

// DropoutKey is the dropout kernel for dtype D, in mode Mode, with the mask
// from an explicit U8 tensor (Mask) or from the counter-based RNG.
type DropoutKey struct {
	D    dtype.DType
	Mode DropoutMode
	Mask bool
}

// Name is dropout[_resid|_add|_expand]_<D>[_mask].
func (k DropoutKey) Name() string {
	op := [...]string{"dropout", "dropout_resid", "dropout_add", "dropout_expand"}[k.Mode]
	return variantName(op, false, k.D.String(), pick(k.Mask, "mask", ""))
}

// ColOp is an operation of colvec.comp.
type ColOp uint8

const (
	ColScale   ColOp = iota + 1 // out = alpha·out + (v[j] + k)·a
	ColSum                      // out[j] = alpha·Σ_i a[i,j] (·b[i,j] with Prod)
	RowSquares                  // out[i] = Σ_j a[i,j]²
)

// ColKey is a colvec.comp kernel over inputs of dtype D. C32 marks an f32
// output of the sums (else D); Prod the product form of ColSum; A32 a
// ColSum of f32 inputs into D (the second pass of a split column sum,
// over the first pass's f32 partial sums; f16 and bf16 only); NF4 a
// RowSquares of an NF4 weight whose values are rounded to D.
type ColKey struct {
	Op   ColOp
	D    dtype.DType
	C32  bool
	Prod bool
	A32  bool
	NF4  bool
}

// Name is colscale_<D>, colsum[_prod]_<D>[_c32|_a32] or rowsq_<D>[_nf4]_c32.
func (k ColKey) Name() string {
	switch k.Op {
	case ColScale:
		return variantName("colscale", false, k.D.String(), "")
	case ColSum:
		return variantName(pick(k.Prod, "colsum_prod", "colsum"), false, k.D.String(), pick(k.C32, "c32", pick(k.A32, "a32", "")))
	}
	return variantName("rowsq", false, k.D.String(), pick(k.NF4, "nf4_c32", "c32"))
}

// DoraNormKey is DoRA's row-norm kernel for adapter dtype D.
type DoraNormKey struct{ D dtype.DType }

// Name is dora_norm_<D>.
func (k DoraNormKey) Name() string { return variantName("dora_norm", false, k.D.String(), "") }

// RowScaleKey is the DoRA merge kernel (rowscale.comp) for weight dtype D:
// w = v[i]·(w + alpha·a) row by row, or with Inverse w = w/v[i] + alpha·a
// (the unmerge).
type RowScaleKey struct {
	D       dtype.DType
	Inverse bool
}

// Name is rowscale_<D>[_inv].
func (k RowScaleKey) Name() string {
	return variantName("rowscale", false, k.D.String(), pick(k.Inverse, "inv", ""))
}

func (DropoutKey) sealed()  {}
func (ColKey) sealed()      {}
func (DoraNormKey) sealed() {}
func (RowScaleKey) sealed() {}

// ExtKeys lists every extension kernel's key.
func ExtKeys() []Key {
	var ks []Key
	for _, d := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
		for _, mode := range dropoutModes {
			ks = append(ks, DropoutKey{D: d, Mode: mode}, DropoutKey{D: d, Mode: mode, Mask: true})
		}
		ks = append(ks, ColKey{Op: ColScale, D: d}, ColKey{Op: RowSquares, D: d, C32: true}, ColKey{Op: RowSquares, D: d, C32: true, NF4: true})
		for _, prod := range []bool{false, true} {
			ks = append(ks, ColKey{Op: ColSum, D: d, Prod: prod}, ColKey{Op: ColSum, D: d, C32: true, Prod: prod})
		}
		if d != dtype.F32 {
			ks = append(ks, ColKey{Op: ColSum, D: d, A32: true})
		}
		ks = append(ks, DoraNormKey{D: d}, RowScaleKey{D: d}, RowScaleKey{D: d, Inverse: true})
	}
	return ks
}

// extVariants are the kernels of the LoRA extensions: dropout, the bias
// gradients and DoRA, for every float layer dtype.
func extVariants(t *variantTable) {
	for _, d := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
		td := typeDefine(d.String())
		for _, mode := range dropoutModes {
			for _, mask := range []bool{false, true} {
				defs := map[string]string{"D_TYPE": td, "MODE": string(rune('0' + mode))}
				if mask {
					defs["MASK"] = ""
				}
				bufs := 3
				if mode == DropoutExpand {
					bufs = 5 // and G, A
				}
				t.add(DropoutKey{D: d, Mode: mode, Mask: mask}, Variant{Source: "dropout.comp", Defines: defs,
					Buffers: bufs, PushSize: sizeOf[DropoutPush]()})
			}
		}
		col := func(k ColKey, defs map[string]string) {
			defs["D_TYPE"] = td
			t.add(k, Variant{Source: "colvec.comp", Defines: defs, Buffers: 4, PushSize: sizeOf[ColPush]()})
		}
		col(ColKey{Op: ColScale, D: d}, map[string]string{"OP_SCALE": ""})
		for _, prod := range []bool{false, true} {
			for _, c32 := range []bool{false, true} {
				defs := map[string]string{"OP_COLSUM": "", "C_TYPE": pick(c32, "TYPE_F32", td)}
				if prod {
					defs["PROD"] = ""
				}
				col(ColKey{Op: ColSum, D: d, C32: c32, Prod: prod}, defs)
			}
		}
		if d != dtype.F32 {
			col(ColKey{Op: ColSum, D: d, A32: true}, map[string]string{"OP_COLSUM": "", "C_TYPE": td, "A32": ""})
		}
		col(ColKey{Op: RowSquares, D: d, C32: true}, map[string]string{"OP_ROWSQ": "", "C_TYPE": "TYPE_F32"})
		col(ColKey{Op: RowSquares, D: d, C32: true, NF4: true}, map[string]string{"OP_ROWSQ": "", "C_TYPE": "TYPE_F32", "NF4_A": ""})
		t.add(DoraNormKey{D: d}, Variant{Source: "dora_norm.comp", Defines: map[string]string{"D_TYPE": td},
			Buffers: 7, PushSize: sizeOf[DoraNormPush]()})
		for _, inv := range []bool{false, true} {
			defs := map[string]string{"D_TYPE": td}
			if inv {
				defs["INVERSE"] = ""
			}
			t.add(RowScaleKey{D: d, Inverse: inv}, Variant{Source: "rowscale.comp", Defines: defs,
				Buffers: 3, PushSize: sizeOf[RowScalePush]()})
		}
	}
}
