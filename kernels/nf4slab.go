package kernels

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/vk"
)

// NF4 weights on the workgroup-scope kernel run in column slabs: a slab of
// the weight (the B columns of a range of C columns) is dequantized into a
// bounded scratch buffer, then the dense kernel computes those C columns.
//
// Why: decoding the 4-bit tile inside the workgroup-scope kernel, either in
// a cooperative-matrix decode function or into shared memory, sits in
// series with the driver's own tile staging and measured several times
// slower than a 16-bit B (docs/PERFORMANCE.md). Dequantizing a slab costs
// one pass over 2.5 bytes per weight, which at large M is about 1% of the
// matmul. The scratch is shared by a recording's products and holds at
// most Options.NF4SlabBytes (or 128
// columns where one column alone is larger): a weight that fits is
// dequantized whole, a larger one never is.
//
// Small M (below nf4SlabMinRows) is memory-bound: there the per-tile decode
// reads 4 bits per weight instead of 16, so it keeps the in-kernel decode.

// slabCache remembers one recording's NF4 slab scratch (see slabScratch).
type slabCache struct {
	rec *vk.Recorder
	t   *vk.Tensor
}

// defaultSlabBytes caps the dequantized slab.
const defaultSlabBytes = 32 << 20

// nf4SlabMinRows is the least M for which slabs pay.
const nf4SlabMinRows = 512

// nf4Slabs reports whether g (with NF4 B) runs in slabs on this engine.
func (e *Dispatcher) nf4Slabs(g *Gemm, d dtype.DType, m, n int) bool {
	if g.B.nf4 == nil || m < nf4SlabMinRows || n < 64 || !e.CoopMat2(d) {
		return false
	}
	// The slabs are dense, so the weight's row length does not matter.
	return g.coopLayout(d) != nil && g.fusedUnitStrides()
}

// slabCols is the slab width: C's n columns in the fewest slabs whose
// weight slab fits slabBytes, split evenly and rounded up to a multiple of
// 128 (the kernels' widest tile, so slab edges fall on tile edges).
// Even slabs matter: each slab is its own dispatch, whose last wave of
// workgroups is partly idle, and a short last slab wastes most of one
// (docs/PERFORMANCE.md).
func (e *Dispatcher) slabCols(d dtype.DType, n, k int) int {
	budget := e.opt.NF4SlabBytes
	if budget == 0 {
		budget = defaultSlabBytes
	}
	most := max(128, budget/(k*d.Size())/128*128)
	slabs := ceilDiv(n, most)
	return min(n, ceilDiv(ceilDiv(n, slabs), 128)*128)
}

// slabScratch returns a tensor of at least elems elements for the slabs of one
// recording: the products of a recording share one (each ends with a
// barrier before the next dequantizes into it), so an MLP step holds one
// slab, not one per product. It is freed at Submit with the recording.
func (e *Dispatcher) slabScratch(rec *vk.Recorder, d dtype.DType, elems int) (*vk.Tensor, error) {
	e.slabMu.Lock()
	defer e.slabMu.Unlock()
	if c := e.slab; c.rec == rec && !c.t.Released() && c.t.DType() == d && c.t.Numel() >= elems {
		return c.t, nil
	}
	t, err := e.dev.NewTensor(d, elems)
	if err != nil {
		return nil, fmt.Errorf("lora: matmul NF4 slab scratch: %w", err)
	}
	rec.Hold(t)
	e.slab.rec, e.slab.t = rec, t
	return t, nil
}

// gemmNF4Slabs records p (NF4 B) slab by slab: for each range of C
// columns, dequantize the weight slab B[:, n0:n0+s] into scratch, then the
// dense product into C[:, n0:n0+s] (and the fused term's matching columns
// of B2), planned like any other product.
func (e *Dispatcher) gemmNF4Slabs(rec *vk.Recorder, p *problem) error {
	g, d, m, n, k := p.g, p.d, p.m, p.n, p.k
	w := g.B.nf4
	cols := e.slabCols(d, n, k)
	buf, err := e.slabScratch(rec, d, cols*k)
	if err != nil {
		return err
	}
	slab := func(s int) (*vk.Tensor, error) {
		if g.B.trans {
			return buf.View(s, k) // X·Wᵀ: B[k, n] = W[n, k], the slab is W[n0:n0+s, :]
		}
		return buf.View(k, s) // G·W: B[k, n] = W[k, n], the slab is W[:, n0:n0+s]
	}
	var b2cs int
	if p.k2 > 0 {
		_, cs := g.B2.strides()
		b2cs = int(cs)
	}
	for n0 := 0; n0 < n; n0 += cols {
		s := min(cols, n-n0)
		t, err := slab(s)
		if err != nil {
			return err
		}
		if g.B.trans {
			err = quant.DequantizeRegionOnDevice(e.dev, rec, w, t, n0, 0, s, k)
		} else {
			err = quant.DequantizeRegionOnDevice(e.dev, rec, w, t, 0, n0, k, s)
		}
		if err != nil {
			return fmt.Errorf("kernels: matmul NF4 slab: %w", err)
		}
		rec.Barrier()
		sub := *g
		sub.B = Dense(t)
		if g.B.trans {
			sub.B = sub.B.T()
		}
		sp := &problem{g: &sub, d: d, m: m, n: s, k: k, k2: p.k2}
		pl, _ := e.plan(sp)
		if err := e.record(rec, sp, pl, gemmDims{cRs: n, cOff: n0, b2Off: n0 * b2cs}); err != nil {
			return err
		}
		// The next slab's dequantization overwrites a scratch this one reads.
		rec.Barrier()
	}
	return nil
}
