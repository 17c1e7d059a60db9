package kernels

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/shaders"
)

// problem is one validated product: its operands, layer dtype and sizes.
type problem struct {
	g           *Gemm
	d           dtype.DType
	m, n, k, k2 int
	segs        []*problem // further K segments into the same C (segments.go)
}

// plan is how one product runs: the kernel, its specialization constants,
// the grid before split-K and the split of K. A slab plan instead
// dequantizes an NF4 B in column slabs and plans each slab's dense product
// afresh (nf4slab.go).
type plan struct {
	kernel         shaders.MatmulKernel
	spec           []uint32
	gx, gy         int
	splits, kSplit int
	slabs          bool
	fm, fn         uint8  // the subgroup-scope kernel's fragment grid
	subgroup       uint32 // its required subgroup size, 0 for the driver's
}

// candidate is one way to run a product: take reports whether it can, and
// how. Candidates are tried in order and the first that takes the product
// runs it; the last always does.
type candidate struct {
	name string
	take func(e *Dispatcher, p *problem) (plan, bool)
}

// candidates, fastest first where they overlap:
//   - NF4 weights at large M on a workgroup-scope device: dense slabs on
//     that kernel beat decoding 4-bit tiles inside it (nf4slab.go);
//   - subgroup-scope cooperative matrices on the device's widest tile,
//     where that tile alone fills the device, unless the product is deep
//     enough for the unrolled workgroup-scope kernel to win
//     (docs/PERFORMANCE.md);
//   - workgroup-scope cooperative matrices (VK_NV_cooperative_matrix2),
//     including their narrow tiles for [M, r] outputs;
//   - the narrow kernel for outputs with a side of at most narrowMax (the
//     rank products X·Aᵀ, G·B, dA, dB), which reads the big operand once;
//   - subgroup-scope cooperative matrices (VK_KHR_cooperative_matrix);
//   - the scalar tiled kernel, which takes everything.
var candidates = []candidate{
	{"nf4-slabs", (*Dispatcher).takeNF4Slabs},
	{"coopmat", (*Dispatcher).takeCoopMatWide},
	{"cm2", (*Dispatcher).takeCM2},
	{"narrow", (*Dispatcher).takeNarrow},
	{"coopmat", (*Dispatcher).takeCoopMat},
	{"tiled", (*Dispatcher).takeTiled},
}

// plan picks the first candidate that takes p.
func (e *Dispatcher) plan(p *problem) (plan, string) {
	for _, c := range candidates {
		if pl, ok := c.take(e, p); ok {
			return pl, c.name
		}
	}
	panic("kernels: the tiled kernel refused a product") // takeTiled always takes
}

func (e *Dispatcher) takeNF4Slabs(p *problem) (plan, bool) {
	return plan{slabs: true}, e.nf4Slabs(p.g, p.d, p.m, p.n)
}

func (e *Dispatcher) takeCM2(p *problem) (plan, bool) {
	coop := p.g.coopLayout(p.d)
	t, ok := e.pickCM2Tile(p.d, p.m, p.n, p.g.B.nf4 != nil)
	if !ok || coop == nil || !p.g.cm2Fits() {
		return plan{}, false
	}
	return e.tiledPlan(shaders.MatmulCM2, e.cm2Spec(p.d, t, *coop, 1), t.BM, t.BN, t.BK, p), true
}

func (e *Dispatcher) takeNarrow(p *problem) (plan, bool) {
	np, ok := e.narrowPlan(p.g, p.m, p.n)
	if !ok {
		return plan{}, false
	}
	return e.narrowGemmPlan(np, p.m, p.n, p.k), true
}

func (e *Dispatcher) takeCoopMat(p *problem) (plan, bool) {
	coop := p.g.coopLayout(p.d)
	t, sup, ok := e.pickCoopTile(p.d, p.m, p.n)
	if !ok || coop == nil {
		return plan{}, false
	}
	pl := e.tiledPlan(shaders.MatmulCoopMat, t.spec(sup, *coop), t.BM, t.BN, t.BK, p)
	pl.fm, pl.fn, _ = t.frags(sup.shape) // the probe kept only built grids
	pl.subgroup = sup.required
	return pl, true
}

// takeCoopMatWide takes a dense product whose output the subgroup-scope
// kernel's first (widest) tile covers with enough workgroups to fill the
// device, unless the narrow kernel would take it or the workgroup-scope
// kernel runs it faster: on a device that has that kernel for d, a product
// at least cm2DeepK deep goes to it. Unrolled, the workgroup-scope kernel
// beat the wide tile by 11–17% at llama3-8b's products (K = 4096 and
// 14336) and lost by 2–30% at gemma-2b's and qwen2.5-0.5b's shallower ones
// (K = 2048 and 896), where its eight-step groups barely run
// (docs/PERFORMANCE.md). Smaller outputs fall to the later candidates,
// where the workgroup-scope kernel's 128×128 tile gives more workgroups
// than the subgroup-scope kernel's narrower fallbacks.
func (e *Dispatcher) takeCoopMatWide(p *problem) (plan, bool) {
	if p.g.B.nf4 != nil || !e.CoopMat(p.d) || min(p.m, p.n) <= narrowMax {
		return plan{}, false
	}
	if e.CoopMat2(p.d) && p.k >= cm2DeepK {
		return plan{}, false
	}
	t := e.coop[p.d].tiles[0]
	if ceilDiv(p.m, t.BM)*ceilDiv(p.n, t.BN) < e.targetGroups() {
		return plan{}, false
	}
	return e.takeCoopMat(p)
}

// cm2DeepK is the depth from which the workgroup-scope kernel runs a
// product the wide subgroup-scope tile could take (see takeCoopMatWide):
// the shallowest product measured where it won.
const cm2DeepK = 4096

func (e *Dispatcher) takeTiled(p *problem) (plan, bool) {
	t := e.pickTile(p.m, p.n)
	return e.tiledPlan(shaders.MatmulTiled, t.spec(), t.BM, t.BN, t.BK, p), true
}

// tiledPlan is the plan of a kernel with bm×bn output tiles and K steps of
// bk: one workgroup per tile, split-K when the tiles do not fill the device.
func (e *Dispatcher) tiledPlan(kern shaders.MatmulKernel, spec []uint32, bm, bn, bk int, p *problem) plan {
	pl := plan{kernel: kern, spec: spec, gx: ceilDiv(p.n, bn), gy: ceilDiv(p.m, bm)}
	pl.splits, pl.kSplit = e.pickSplit(bm, bn, bk, p.m, p.n, p.k)
	return pl
}

// KernelFor names the kernel that g would run on ("nf4-slabs", "cm2",
// "narrow", "coopmat" or "tiled"), or returns g's argument error. Tests
// and benchmarks use it to say which path they measured.
func (e *Dispatcher) KernelFor(g Gemm) (string, error) {
	if len(g.Segs) > 0 {
		return e.segKernelFor(g)
	}
	p, err := e.problem(&g)
	if err != nil {
		return "", err
	}
	_, name := e.plan(p)
	return name, nil
}

// problem validates g and finds its layer dtype and sizes.
func (e *Dispatcher) problem(g *Gemm) (*problem, error) {
	p, err := newProblem(g)
	if err != nil {
		return nil, fmt.Errorf("kernels: matmul: %w", err)
	}
	return p, nil
}

// newProblem is problem without the error's prefix.
func newProblem(g *Gemm) (*problem, error) {
	m, n, k, k2, err := g.validate()
	if err != nil {
		return nil, err
	}
	key, err := g.key(shaders.MatmulTiled)
	if err != nil {
		return nil, err
	}
	return &problem{g: g, d: key.D, m: m, n: n, k: k, k2: k2}, nil
}

// coopLayout returns the operands' layout when the cooperative-matrix
// kernels cover them (A of dtype d, B of dtype d or NF4, each read along a
// unit stride), else nil.
func (g *Gemm) coopLayout(d dtype.DType) *coopLayout {
	if g.A.nf4 != nil || g.A.DType() != d || (g.B.nf4 == nil && g.B.DType() != d) {
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
func (g *Gemm) cm2Fits() bool {
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
func (g *Gemm) fusedUnitStrides() bool {
	if g.A2.IsZero() {
		return true
	}
	ars, acs := g.A2.strides()
	brs, bcs := g.B2.strides()
	return (ars == 1 || acs == 1) && (brs == 1 || bcs == 1)
}
