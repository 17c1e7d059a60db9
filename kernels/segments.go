package kernels

import (
	"fmt"

	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
)

// Seg is one more K segment of a product (Gemm.Segs): Seg.A·Seg.B, and
// Seg.Alpha2·Seg.A2·Seg.B2 when A2 is set, added into the product's C.
// Its operands follow Gemm's rules with the product's C, Alpha and the
// segment's own depth.
type Seg struct {
	A, B, A2, B2 Mat
	Alpha2       float32
}

// maxSegs is the most extra segments matmul_cm2.comp walks in one
// dispatch (its SEGS specialization constant, at most 3 with the
// product's own).
const maxSegs = 2

// segGemm is segment i of g as a product of its own that adds into C.
func (g *Gemm) segGemm(i int) Gemm {
	s := g.Segs[i]
	return Gemm{C: g.C, A: s.A, B: s.B, A2: s.A2, B2: s.B2, Alpha: g.Alpha, Alpha2: s.Alpha2, Beta: 1}
}

// gemmSegs records a product with K segments: on the workgroup-scope
// kernel as one dispatch whose workgroups walk every segment's K range
// (segPlan), else as the product and then each segment added into C after
// a barrier. Every operand is validated before anything is recorded.
func (e *Dispatcher) gemmSegs(rec *vk.Recorder, g Gemm) error {
	p, err := e.segProblem(g)
	if err != nil {
		return err
	}
	if pl, ok := e.segPlan(p); ok {
		return e.record(rec, p, pl, gemmDims{cRs: p.n})
	}
	if err := e.Gemm(rec, *p.g); err != nil {
		return err
	}
	for _, s := range p.segs {
		rec.Barrier()
		if err := e.Gemm(rec, *s.g); err != nil {
			return err
		}
	}
	return nil
}

// segProblem validates a segmented product: the product without its
// segments, and each segment as a product of its own into the same C,
// of the same layer dtype. Errors name the segment (1 is the first of
// g.Segs).
func (e *Dispatcher) segProblem(g Gemm) (*problem, error) {
	main := g
	main.Segs = nil
	p, err := e.problem(&main)
	if err != nil {
		return nil, err
	}
	for i := range g.Segs {
		sg := g.segGemm(i)
		sp, err := newProblem(&sg)
		if err != nil {
			return nil, fmt.Errorf("kernels: matmul: K segment %d: %w", i+1, err)
		}
		if sp.d != p.d {
			return nil, fmt.Errorf("kernels: matmul: K segment %d has layer dtype %s, the product %s: %w", i+1, sp.d, p.d, ErrBadInput)
		}
		p.segs = append(p.segs, sp)
	}
	return p, nil
}

// segPlan is the one-dispatch plan of a segmented product p on the
// workgroup-scope kernel, or false when that kernel cannot take it: dense
// B everywhere, the same operand forms in every segment (the kernel
// derives the other segments' strides from the first's form), at most
// maxSegs extra segments, an output whose tiles fill the device unsplit,
// and at least cm2DeepK of depth in all, the depth from which the kernel
// wins (takeCoopMatWide).
func (e *Dispatcher) segPlan(p *problem) (plan, bool) {
	if len(p.segs) == 0 || len(p.segs) > maxSegs || !e.CoopMat2(p.d) || e.opt.DisableSegments {
		return plan{}, false
	}
	coop := p.g.coopLayout(p.d)
	if coop == nil || p.g.B.nf4 != nil || !p.g.cm2Fits() {
		return plan{}, false
	}
	depth := p.k
	rows, cols, fused := false, false, p.k2 > 0
	if fused {
		rows, cols = p.g.A2.unitCols(), p.g.B2.unitCols()
	}
	for _, s := range p.segs {
		c := s.g.coopLayout(p.d)
		if c == nil || *c != *coop || s.g.B.nf4 != nil || !s.g.cm2Fits() {
			return plan{}, false
		}
		if s.k2 > 0 {
			if !fused {
				rows, cols, fused = s.g.A2.unitCols(), s.g.B2.unitCols(), true
			} else if s.g.A2.unitCols() != rows || s.g.B2.unitCols() != cols {
				return plan{}, false
			}
		}
		depth += s.k
	}
	if depth < cm2DeepK {
		return plan{}, false
	}
	t, ok := e.pickCM2Tile(p.d, p.m, p.n, false)
	if !ok || p.n <= narrowMax || ceilDiv(p.m, t.BM)*ceilDiv(p.n, t.BN) < e.targetGroups() {
		return plan{}, false
	}
	spec := e.cm2Spec(p.d, t, *coop, 1+len(p.segs))
	pl := plan{kernel: shaders.MatmulCM2, spec: spec, gx: ceilDiv(p.n, t.BN), gy: ceilDiv(p.m, t.BM), splits: 1, kSplit: p.k}
	return pl, true
}

// unitCols reports whether the operand's column index has the unit
// stride (it is stored as used, not transposed).
func (m Mat) unitCols() bool { _, cs := m.strides(); return cs == 1 }

// segBindings are the workgroup-scope kernel's bindings 6..13 and the
// push constants of p's extra segments: A, B, A2, B2 of each, a dummy
// where absent. The fused terms' strides in pc come from the first
// segment that has one when the product itself has none.
func segBindings(p *problem, pc *shaders.MatmulPush, dummy vk.Binding) []vk.Binding {
	out := make([]vk.Binding, 0, 4*maxSegs)
	for i := range maxSegs {
		if i >= len(p.segs) {
			out = append(out, dummy, dummy, dummy, dummy)
			continue
		}
		s := p.segs[i]
		a2, b2 := dummy, dummy
		if s.k2 > 0 {
			a2, b2 = s.g.A2.t.Binding(), s.g.B2.t.Binding()
			if p.k2 == 0 && pc.A2Cs == 0 && pc.A2Rs == 0 {
				pc.A2Rs, pc.A2Cs = s.g.A2.strides()
				pc.B2Rs, pc.B2Cs = s.g.B2.strides()
			}
		}
		pc.SegK[i], pc.SegR[i], pc.SegAlpha2[i] = uint32(s.k), uint32(s.k2), s.g.Alpha2
		out = append(out, s.g.A.t.Binding(), s.g.B.t.Binding(), a2, b2)
	}
	return out
}

// segKernelFor names the kernel of a segmented product: "cm2" when one
// workgroup-scope dispatch walks every segment, else the product's own
// (KernelFor).
func (e *Dispatcher) segKernelFor(g Gemm) (string, error) {
	p, err := e.segProblem(g)
	if err != nil {
		return "", err
	}
	if _, ok := e.segPlan(p); ok {
		return "cm2", nil
	}
	return e.KernelFor(*p.g)
}
