package kernels

import "github.com/vklora/vklora/shaders"

// narrowPlan is how shaders/matmul_narrow.comp runs one product whose
// output has a narrow side (the LoRA rank): which side is narrow, which
// index of the big operand is contiguous, and the thread layout.
type narrowPlan struct {
	narrowM bool // the narrow side is M (B holds the wide side), else N (A does)
	axpy    bool // the big operand is contiguous along the wide index, else along K
	rb      int  // narrow columns per workgroup
	rpt     int  // wide indices per thread
}

// narrowMax is the widest narrow side sent to the narrow kernel. Up to it
// the kernel reads the big operand at most once per 32 columns; a wider
// output fills the tiles of the tiled kernels well enough.
const narrowMax = 32

const (
	narrowWG     = 256 // invocations; a multiple of the shader's 32 K lanes
	narrowKChunk = 128 // the shader's BKC: K per staged chunk of the small operand
	// narrowScratchBytes caps the split-K partials of one narrow product:
	// dA and dB split K = M finely, and their partials are f32 [splits, r, wide].
	narrowScratchBytes = 16 << 20
)

// narrowPlan reports whether g, an [m, n] product, runs on the narrow
// kernel, and how: the output has a side of at most narrowMax, there is no
// fused term or NF4 weight, the big operand is contiguous along one index,
// and the device runs the workgroup.
func (e *Dispatcher) narrowPlan(g *Gemm, m, n int) (narrowPlan, bool) {
	if e.opt.DisableNarrow || !g.A2.IsZero() || g.B.nf4 != nil || min(m, n) > narrowMax {
		return narrowPlan{}, false
	}
	narrowM, j := narrowSide(m, n)
	// The big operand's strides along (wide, K).
	ws, ks := g.A.strides()
	if narrowM {
		ks, ws = g.B.strides()
	}
	if ks != 1 && ws != 1 {
		return narrowPlan{}, false
	}
	p := newNarrowPlan(narrowM, ks != 1, j)
	if !fits(e.dev.Caps(), p.sharedBytes(), narrowWG) {
		return narrowPlan{}, false
	}
	return p, true
}

// narrowSide says which side of an [m, n] output the narrow kernel treats
// as narrow (M when narrowM, else N) and its extent j: N unless only M is
// narrow or M is the narrower.
func narrowSide(m, n int) (narrowM bool, j int) {
	if n > narrowMax || m < n {
		return true, m
	}
	return false, n
}

// newNarrowPlan picks the thread layout for a narrow side of j.
func newNarrowPlan(narrowM, axpy bool, j int) narrowPlan {
	p := narrowPlan{narrowM: narrowM, axpy: axpy, rb: 32, rpt: 2}
	switch {
	case j <= 8:
		p.rb = 8
	case j <= 16:
		p.rb = 16
	}
	// The K-contiguous form reads each staged value of the small operand
	// from shared memory once per wide index a thread owns: four keep the
	// shared-memory traffic at one word per four FMAs (64 accumulators).
	if !axpy && p.rb <= 16 {
		p.rpt = 4
	}
	return p
}

// sharedBytes mirrors the shader's S and red arrays.
func (p narrowPlan) sharedBytes() int {
	return 4 * (p.rb*narrowKChunk + narrowWG/32*8*33)
}

// widePerGroup is how many wide indices one workgroup owns.
func (p narrowPlan) widePerGroup() int {
	if p.axpy {
		return narrowWG * p.rpt
	}
	return narrowWG / 32 * p.rpt
}

func (p narrowPlan) spec() []uint32 {
	return []uint32{narrowWG, uint32(p.rb), uint32(p.rpt), b32(p.narrowM), b32(p.axpy)}
}

// grid is the dispatch of an [m, n] product before split-K: wide blocks
// along x (the larger limit), narrow chunks along y.
func (p narrowPlan) grid(m, n int) (x, y int) {
	w, j := m, n
	if p.narrowM {
		w, j = n, m
	}
	return ceilDiv(w, p.widePerGroup()), ceilDiv(j, p.rb)
}

// narrowGemmPlan turns p into the plan record dispatches: split-K when
// the grid is too small to fill the device, in slices of at least one
// staged chunk, and no more partials than narrowScratchBytes.
func (e *Dispatcher) narrowGemmPlan(p narrowPlan, m, n, k int) plan {
	x, y := p.grid(m, n)
	pl := plan{kernel: shaders.MatmulNarrow, spec: p.spec(), gx: x, gy: y, splits: 1, kSplit: k}
	want := min(ceilDiv(e.targetGroups(), x*y), k/narrowKChunk, narrowScratchBytes/(4*m*n), 64)
	if want > 1 {
		pl.kSplit = ceilDiv(ceilDiv(k, want), narrowKChunk) * narrowKChunk
		pl.splits = ceilDiv(k, pl.kSplit)
	}
	return pl
}
