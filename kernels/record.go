package kernels

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
)

// Gemm validates g, picks its kernel (the first of candidates that takes
// it) and records the dispatch, with the split-K reduction when the output
// is too small to fill the device. Argument errors wrap ErrBadInput and
// are found before anything is recorded.
func (e *Dispatcher) Gemm(rec *vk.Recorder, g Gemm) error {
	if rec == nil {
		return fmt.Errorf("kernels: matmul: recorder is nil: %w", ErrBadInput)
	}
	if len(g.Segs) > 0 {
		return e.gemmSegs(rec, g)
	}
	p, err := e.problem(&g)
	if err != nil {
		return err
	}
	pl, _ := e.plan(p)
	if pl.slabs {
		return e.gemmNF4Slabs(rec, p)
	}
	return e.record(rec, p, pl, gemmDims{cRs: p.n})
}

// gemmDims are where one dispatch writes inside C: C's row stride and the
// element offsets of C[0,0] and B2[0,0] (nonzero for a column slab of a
// wider C).
type gemmDims struct{ cRs, cOff, b2Off int }

// record records the kernel of plan pl for p (and the split-K reduction).
func (e *Dispatcher) record(rec *vk.Recorder, p *problem, pl plan, dm gemmDims) error {
	g, m, n, k, k2 := p.g, p.m, p.n, p.k, p.k2
	if dm.cOff != 0 || dm.cRs != n {
		// The reduction addresses whole rows of C: a slab runs unsplit.
		pl.splits, pl.kSplit = 1, k
	}
	key, err := g.key(pl.kernel)
	if err != nil {
		return fmt.Errorf("kernels: matmul: %w", err)
	}
	key.FM, key.FN = pl.fm, pl.fn
	pc := shaders.MatmulPush{M: uint32(m), N: uint32(n), K: uint32(k), K2: uint32(k2), CRs: uint32(dm.cRs),
		Alpha: g.Alpha, Beta: g.Beta, Alpha2: g.Alpha2, KSplit: uint32(pl.kSplit),
		COff: uint32(dm.cOff), B2Off: uint32(dm.b2Off)}
	pc.ARs, pc.ACs = g.A.strides()
	pc.BRs, pc.BCs = g.B.strides()
	aBind := g.A.t.Binding()
	bBind, qBind, isNF4 := g.B.bindings()
	if !isNF4 {
		qBind = aBind // unused by non-NF4 variants, but every binding needs a buffer
	} else {
		pc.Blocksize = uint32(g.B.nf4.Blocksize)
	}
	a2Bind, b2Bind := aBind, aBind
	if k2 > 0 {
		pc.A2Rs, pc.A2Cs = g.A2.strides()
		pc.B2Rs, pc.B2Cs = g.B2.strides()
		a2Bind, b2Bind = g.A2.t.Binding(), g.B2.t.Binding()
	}
	binds := []vk.Binding{aBind, bBind, g.C.Binding(), a2Bind, b2Bind, qBind}
	if pl.kernel == shaders.MatmulCM2 {
		binds = append(binds, segBindings(p, &pc, aBind)...)
	}
	groups := [3]uint32{uint32(pl.gx), uint32(pl.gy), uint32(pl.splits)}
	if pl.splits == 1 {
		kern, err := e.dev.ShaderKernelSubgroup(key, pl.subgroup, pl.spec...)
		if err != nil {
			return err
		}
		return rec.Dispatch(kern, groups, vk.PushBytes(&pc), binds...)
	}
	// Split-K: each z-slice writes alpha·(its K range) (+ the fused term in
	// slice 0) to an f32 scratch; the reduction adds slices and beta·C.
	// The partials live until the reduction has read them; later products
	// of the recording reuse their memory.
	scratch, ok := rec.Reuse(dtype.F32, pl.splits, m, n)
	if !ok {
		if scratch, err = e.dev.NewTensor(dtype.F32, pl.splits, m, n); err != nil {
			return fmt.Errorf("kernels: matmul split-K scratch: %w", err)
		}
		rec.Hold(scratch)
	}
	partial := key
	partial.C32 = p.d != dtype.F32
	pk, err := e.dev.ShaderKernelSubgroup(partial, pl.subgroup, pl.spec...)
	if err != nil {
		return err
	}
	pc.Beta = 0
	binds[2] = scratch.Binding()
	if err := rec.Dispatch(pk, groups, vk.PushBytes(&pc), binds...); err != nil {
		return err
	}
	rec.Barrier()
	const wg = 64
	// The reduction writes C, so its variant follows C's dtype (f32 for the
	// [M, r] LoRA intermediates), not the layer dtype.
	rk, err := e.dev.ShaderKernel(shaders.SplitKReduceKey{C: g.C.DType()}, wg)
	if err != nil {
		return err
	}
	rp := shaders.SplitKPush{M: uint32(m), N: uint32(n), CRs: uint32(n), S: uint32(pl.splits), Beta: g.Beta}
	if err := rec.Dispatch(rk, [3]uint32{uint32(ceilDiv(n, wg)), e.gridRows(m), 1}, vk.PushBytes(&rp), scratch.Binding(), g.C.Binding()); err != nil {
		return err
	}
	return rec.Recycle(scratch)
}

// ScratchBound is the most split-K scratch, in bytes, that one
// [m, n] = [m, k]·[k, n] product may hold on this dispatcher until its
// reduction has run (0 when no kernel that could take it splits K): the
// bound over the candidates that may take it for some dtype and operand
// layout, for memory budgets.
func (e *Dispatcher) ScratchBound(m, n, k int) uint64 {
	t := e.pickTile(m, n)
	most, _ := e.pickSplit(t.BM, t.BN, t.BK, m, n, k)
	for _, d := range []dtype.DType{dtype.F16, dtype.BF16} {
		for _, nf4 := range []bool{false, true} {
			if t, ok := e.pickCM2Tile(d, m, n, nf4); ok {
				s, _ := e.pickSplit(t.BM, t.BN, t.BK, m, n, k)
				most = max(most, s)
			}
		}
		if t, _, ok := e.pickCoopTile(d, m, n); ok {
			s, _ := e.pickSplit(t.BM, t.BN, t.BK, m, n, k)
			most = max(most, s)
		}
	}
	if !e.opt.DisableNarrow && min(m, n) <= narrowMax {
		narrowM, j := narrowSide(m, n)
		for _, axpy := range []bool{false, true} {
			most = max(most, e.narrowGemmPlan(newNarrowPlan(narrowM, axpy, j), m, n, k).splits)
		}
	}
	if most <= 1 {
		return 0
	}
	return (uint64(4*most*m*n) + 15) &^ 15
}
