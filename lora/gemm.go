package lora

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
)

// matmulPush mirrors the push constants of shaders/include/matmul_push.glsl.
type matmulPush struct {
	M, N, K, K2         uint32
	ARs, ACs, BRs, BCs  uint32
	CRs                 uint32
	A2Rs, A2Cs          uint32
	B2Rs, B2Cs          uint32
	Alpha, Beta, Alpha2 float32
	Blocksize, KSplit   uint32
	COff, B2Off         uint32
}

// The GLSL block has 20 four-byte members; a mismatch fails to compile here.
var _ [80]byte = [unsafe.Sizeof(matmulPush{})]byte{}

type splitkPush struct {
	M, N, CRs, S uint32
	Beta         float32
}

var _ [20]byte = [unsafe.Sizeof(splitkPush{})]byte{}

// gemm is C = Alpha·op(A)·op(B) + Alpha2·op(A2)·op(B2) + Beta·C. The second
// product is optional (A2 zero); A2 must be f32 and B2 of the layer dtype.
type gemm struct {
	C                   *vk.Tensor
	A, B, A2, B2        Mat
	Alpha, Beta, Alpha2 float32
}

// MatmulTo computes C = alpha·op(A)·op(B) + beta·C with fp32 accumulation,
// where op(A) is [M, K], op(B) is [K, N] and C is [M, N]. Operands are dense
// f32/f16/bf16 tensors (B may be NF4); the dtypes must be one layer dtype D
// or f32. beta = 0 never reads C, so C may hold garbage.
func (e *Engine) MatmulTo(rec *vk.Recorder, c *vk.Tensor, a, b Mat, alpha, beta float32) error {
	return e.gemm(rec, gemm{C: c, A: a, B: b, Alpha: alpha, Beta: beta})
}

func finite32(x float32) bool { return !math.IsNaN(float64(x)) && !math.IsInf(float64(x), 0) }

// layerDType finds D: the one non-f32 dtype among the operands, or f32.
func layerDType(ms ...Mat) (dtype.DType, error) {
	d := dtype.F32
	for _, m := range ms {
		if m.IsZero() {
			continue
		}
		if t := m.dtype(); t != dtype.F32 {
			if d != dtype.F32 && t != d {
				return 0, fmt.Errorf("mixed dtypes %s and %s (operands must share one dtype or be f32): %w", d, t, ErrBadInput)
			}
			d = t
		}
	}
	return d, nil
}

// variant names the matmul kernel for the operand types.
func (g *gemm) variant() (string, dtype.DType, error) {
	d, err := layerDType(g.A, g.B, Dense(g.C), g.B2)
	if err != nil {
		return "", 0, err
	}
	if g.A.nf4 != nil || g.A2.nf4 != nil || g.B2.nf4 != nil {
		return "", 0, fmt.Errorf("an NF4 weight may only be the B operand: %w", ErrBadInput)
	}
	if !g.A2.IsZero() && g.A2.dtype() != dtype.F32 {
		return "", 0, fmt.Errorf("the fused term's A2 %s must be f32: %w", g.A2, ErrBadInput)
	}
	if !g.B2.IsZero() && g.B2.dtype() != d {
		return "", 0, fmt.Errorf("the fused term's B2 %s must have the layer dtype %s: %w", g.B2, d, ErrBadInput)
	}
	name := "matmul_" + d.String()
	if d != dtype.F32 {
		if g.A.dtype() == dtype.F32 {
			name += "_a32"
		}
		if g.B.nf4 == nil && g.B.dtype() == dtype.F32 {
			name += "_b32"
		}
	}
	if g.B.nf4 != nil {
		name += "_nf4"
	}
	if d != dtype.F32 && g.C.DType() == dtype.F32 {
		name += "_c32"
	}
	return name, d, nil
}

func (g *gemm) validate() (m, n, k, k2 int, err error) {
	if err := Dense(g.C).check("output C"); err != nil {
		return 0, 0, 0, 0, err
	}
	if err := g.A.check("A"); err != nil {
		return 0, 0, 0, 0, err
	}
	if err := g.B.check("B"); err != nil {
		return 0, 0, 0, 0, err
	}
	m, k = g.A.dims()
	kb, n := g.B.dims()
	cm, cn := g.C.Dim(0), g.C.Dim(1)
	if kb != k {
		return 0, 0, 0, 0, fmt.Errorf("A %s is [%d,%d] but B %s is [%d,%d]: inner dimensions differ: %w", g.A, m, k, g.B, kb, n, ErrBadInput)
	}
	if cm != m || cn != n {
		return 0, 0, 0, 0, fmt.Errorf("output C %s, want [%d,%d] for A %s · B %s: %w", g.C, m, n, g.A, g.B, ErrBadInput)
	}
	if g.A2.IsZero() != g.B2.IsZero() {
		return 0, 0, 0, 0, fmt.Errorf("fused term needs both A2 and B2 (A2 %s, B2 %s): %w", g.A2, g.B2, ErrBadInput)
	}
	if !g.A2.IsZero() {
		if err := g.A2.check("A2"); err != nil {
			return 0, 0, 0, 0, err
		}
		if err := g.B2.check("B2"); err != nil {
			return 0, 0, 0, 0, err
		}
		m2, j := g.A2.dims()
		j2, n2 := g.B2.dims()
		if m2 != m || n2 != n || j != j2 {
			return 0, 0, 0, 0, fmt.Errorf("fused term A2 %s · B2 %s must be [%d,r]·[r,%d]: %w", g.A2, g.B2, m, n, ErrBadInput)
		}
		k2 = j
	}
	for _, x := range []float32{g.Alpha, g.Beta, g.Alpha2} {
		if !finite32(x) {
			return 0, 0, 0, 0, fmt.Errorf("scale %v is not finite: %w", x, ErrBadInput)
		}
	}
	return m, n, k, k2, nil
}

// gemm validates, picks a kernel and a tile shape, and records the dispatch
// (and the split-K reduction when the output is too small to fill the GPU).
func (e *Engine) gemm(rec *vk.Recorder, g gemm) error {
	if rec == nil {
		return fmt.Errorf("lora: matmul: recorder is nil: %w", ErrBadInput)
	}
	m, n, k, k2, err := g.validate()
	if err != nil {
		return fmt.Errorf("lora: matmul: %w", err)
	}
	name, d, err := g.variant()
	if err != nil {
		return fmt.Errorf("lora: matmul: %w", err)
	}
	if e.nf4Slabs(&g, d, m, n) {
		return e.gemmNF4Slabs(rec, g, d, m, n, k, k2)
	}
	pl := e.plan(d, g.coopLayout(d), g.cm2Fits(), m, n, k)
	// Narrow outputs: on the workgroup-scope kernel where it takes them
	// (tensor cores), else on the narrow kernel.
	if np, ok := e.narrowPlan(&g, m, n); ok && pl.suffix != "_cm2" {
		pl = e.narrowGemmPlan(np, m, n, k)
	}
	return e.record(rec, g, name, d, pl, gemmDims{m: m, n: n, k: k, k2: k2, cRs: n})
}

// gemmDims are one dispatch's sizes, C's row stride, and the element
// offsets of C[0,0] and B2[0,0] (nonzero for a column slab of a wider C).
type gemmDims struct {
	m, n, k, k2, cRs int
	cOff, b2Off      int
}

// record records the matmul kernel of plan pl (and the split-K reduction).
func (e *Engine) record(rec *vk.Recorder, g gemm, name string, d dtype.DType, pl gemmPlan, dm gemmDims) error {
	m, n, k, k2 := dm.m, dm.n, dm.k, dm.k2
	if dm.cOff != 0 || dm.cRs != n {
		// The reduction addresses whole rows of C: a slab runs unsplit.
		pl.splits, pl.kSplit = 1, k
	}
	bm, bn, spec, suffix, splits, kSplit := pl.bm, pl.bn, pl.spec, pl.suffix, pl.splits, pl.kSplit
	p := matmulPush{M: uint32(m), N: uint32(n), K: uint32(k), K2: uint32(k2), CRs: uint32(dm.cRs),
		Alpha: g.Alpha, Beta: g.Beta, Alpha2: g.Alpha2, KSplit: uint32(kSplit),
		COff: uint32(dm.cOff), B2Off: uint32(dm.b2Off)}
	p.ARs, p.ACs = g.A.strides()
	p.BRs, p.BCs = g.B.strides()
	aBind := g.A.t.Binding()
	bBind, qBind, isNF4 := g.B.bindings()
	if !isNF4 {
		qBind = aBind // unused by non-NF4 variants, but every binding needs a buffer
	} else {
		p.Blocksize = uint32(g.B.nf4.Blocksize)
	}
	a2Bind, b2Bind := aBind, aBind
	if k2 > 0 {
		p.A2Rs, p.A2Cs = g.A2.strides()
		p.B2Rs, p.B2Cs = g.B2.strides()
		a2Bind, b2Bind = g.A2.t.Binding(), g.B2.t.Binding()
	}
	var x, y int
	if pl.narrow != nil {
		x, y = pl.narrow.grid(m, n)
	} else {
		x, y = ceilDiv(n, bn), ceilDiv(m, bm)
	}
	groups := [3]uint32{uint32(x), uint32(y), uint32(splits)}
	if splits == 1 {
		kern, err := e.dev.ShaderKernel(name+suffix, 6, int(unsafe.Sizeof(matmulPush{})), spec...)
		if err != nil {
			return err
		}
		return rec.Dispatch(kern, groups, vk.PushBytes(&p), aBind, bBind, g.C.Binding(), a2Bind, b2Bind, qBind)
	}
	// Split-K: each z-slice writes alpha·(its K range) (+ the fused term in
	// slice 0) to an f32 scratch; the reduction adds slices and beta·C.
	// The partials live until the reduction has read them; later products
	// of the recording reuse their memory.
	scratch, ok := rec.Reuse(dtype.F32, splits, m, n)
	if !ok {
		var err error
		if scratch, err = e.dev.NewTensor(dtype.F32, splits, m, n); err != nil {
			return fmt.Errorf("lora: matmul split-K scratch: %w", err)
		}
		rec.Hold(scratch)
	}
	partial := name
	if d != dtype.F32 && g.C.DType() != dtype.F32 {
		partial += "_c32"
	}
	pk, err := e.dev.ShaderKernel(partial+suffix, 6, int(unsafe.Sizeof(matmulPush{})), spec...)
	if err != nil {
		return err
	}
	p.Beta = 0
	if err := rec.Dispatch(pk, groups, vk.PushBytes(&p), aBind, bBind, scratch.Binding(), a2Bind, b2Bind, qBind); err != nil {
		return err
	}
	rec.Barrier()
	const wg = 64
	// The reduction writes C, so its variant follows C's dtype (f32 for the
	// [M, r] LoRA intermediates), not the layer dtype.
	rk, err := e.dev.ShaderKernel("splitk_reduce_"+g.C.DType().String(), 2, int(unsafe.Sizeof(splitkPush{})), wg)
	if err != nil {
		return err
	}
	rp := splitkPush{M: uint32(m), N: uint32(n), CRs: uint32(n), S: uint32(splits), Beta: g.Beta}
	if err := rec.Dispatch(rk, [3]uint32{uint32(ceilDiv(n, wg)), e.gridRows(m), 1}, vk.PushBytes(&rp), scratch.Binding(), g.C.Binding()); err != nil {
		return err
	}
	return rec.Recycle(scratch)
}

// gemmPlan is how one product runs: the kernel's tile and specialization
// constants, its name suffix ("" scalar, "_coopmat", "_cm2", "_narrow")
// and the split of K. A narrow plan sets narrow instead of the tile.
type gemmPlan struct {
	bm, bn, bk     int
	spec           []uint32
	suffix         string
	splits, kSplit int
	narrow         *narrowPlan
}

// plan picks the kernel for an [m, n] = [m, k]·[k, n] product of dtype d;
// coop is the operands' layout for the cooperative-matrix kernel, nil when
// they do not suit it.
//
// The workgroup-scope kernel (VK_NV_cooperative_matrix2) comes first where
// the device has it, then the subgroup-scope one, then the scalar one. The
// workgroup-scope kernel also needs cm2OK (see gemm.cm2Fits).
func (e *Engine) plan(d dtype.DType, coop *coopLayout, cm2OK bool, m, n, k int) gemmPlan {
	t := e.pickTile(m, n)
	p := gemmPlan{bm: t.BM, bn: t.BN, bk: t.BK, spec: t.spec()}
	if ct, ok := e.pickCM2Tile(d, m, n); ok && coop != nil && cm2OK {
		p = gemmPlan{bm: ct.BM, bn: ct.BN, bk: ct.BK, spec: ct.spec(*coop), suffix: "_cm2"}
	} else if ct, sup, ok := e.pickCoopTile(d, m, n); ok && coop != nil {
		p = gemmPlan{bm: ct.BM, bn: ct.BN, bk: ct.BK, spec: ct.spec(sup, *coop), suffix: "_coopmat"}
	}
	p.splits, p.kSplit = e.pickSplit(p.bm, p.bn, p.bk, m, n, k)
	return p
}

// coopLayout returns the operands' layout when the cooperative-matrix
// kernel covers them (A of dtype d, B of dtype d or NF4, each read along a
// unit stride), else nil.
func (g *gemm) coopLayout(d dtype.DType) *coopLayout {
	if g.A.nf4 != nil || g.A.dtype() != d || (g.B.nf4 == nil && g.B.dtype() != d) {
		return nil
	}
	ars, acs := g.A.strides()
	brs, bcs := g.B.strides()
	if (ars != 1 && acs != 1) || (brs != 1 && bcs != 1) {
		return nil
	}
	return &coopLayout{aKF: acs == 1, bKF: brs == 1}
}

// cm2Fits reports what the workgroup-scope kernel needs beyond coopLayout:
// the fused term's operands (if any) have a unit stride in one index each,
// and an NF4 B decoded in the kernel has rows of whole packed words. The
// kernel's staging handles any row length, as the subgroup kernel's does,
// but only whole-word rows have run on a GPU so far.
func (g *gemm) cm2Fits() bool {
	if g.B.nf4 != nil {
		if _, cols := g.B.stored(); cols%8 != 0 {
			return false
		}
	}
	return g.fusedUnitStrides()
}

// fusedUnitStrides reports whether the fused term (if any) has operands
// with a unit stride in one index each, as the workgroup-scope kernel's
// tensor layouts read them.
func (g *gemm) fusedUnitStrides() bool {
	if g.A2.IsZero() {
		return true
	}
	ars, acs := g.A2.strides()
	brs, bcs := g.B2.strides()
	return (ars == 1 || acs == 1) && (brs == 1 || bcs == 1)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// gridRows is the grid height for a kernel that loops over rows by the
// grid height: rows, capped at the device's workgroup-count limit.
func (e *Engine) gridRows(rows int) uint32 {
	limit := int(e.dev.Caps().MaxWorkgroupCount[1])
	if e.rowCap > 0 && e.rowCap < limit {
		limit = e.rowCap
	}
	return uint32(max(1, min(rows, limit)))
}
