package lora

import (
	"fmt"
	"slices"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/kernels"
	"github.com/vklora/vklora/vk"
)

// newOut allocates an output tensor; on error it names what it was for.
func (e *Engine) newOut(what string, d dtype.DType, shape ...int) (*vk.Tensor, error) {
	t, err := e.dev.NewTensor(d, shape...)
	if err != nil {
		return nil, fmt.Errorf("lora: allocate %s: %w", what, err)
	}
	return t, nil
}

// The projection math is recorded in phases so that layers with several
// projections (QKV, MLP) record the independent work of all of them between
// one pair of barriers:
//
//	forward:  xa = x·Aᵀ [M, r] (f32)  |barrier|  y = x·Wᵀ + s·xa·Bᵀ  |barrier|  y += bias
//	backward: gb = g·B  [M, r] (f32)  |barrier|  dA = s·gbᵀ·x, dB = s·gᵀ·xa,
//	                                              dX = β·dX + g·W + s·gb·A
//
// The LoRA terms run inside the base matmul's K loop, so no [M, out] or
// [M, in] temporary exists, and the rank is always contracted first: B·A and
// xᵀ·g are never formed.

// downProject records x·Aᵀ (the caller records a barrier before using it);
// nil without adapter.
func (e *Engine) downProject(rec *vk.Recorder, x, a *vk.Tensor, r int, what string) (*vk.Tensor, error) {
	if r == 0 {
		return nil, nil
	}
	out, err := e.newOut(what, dtype.F32, x.Dim(0), r)
	if err != nil {
		return nil, err
	}
	if err := e.k.Gemm(rec, kernels.Gemm{C: out, A: Dense(x), B: Dense(a).T(), Alpha: 1}); err != nil {
		out.Release()
		return nil, err
	}
	return out, nil
}

// project records y = beta·y + x·Wᵀ + s·xa·Bᵀ.
func (e *Engine) project(rec *vk.Recorder, x, xa *vk.Tensor, p *Projection, y *vk.Tensor, beta float32) error {
	g := kernels.Gemm{C: y, A: Dense(x), B: p.W.mat().T(), Alpha: 1, Beta: beta}
	if xa != nil {
		g.A2, g.B2, g.Alpha2 = Dense(xa), Dense(p.B).T(), float32(p.Scale)
	}
	return e.k.Gemm(rec, g)
}

// linearForward records y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ (+ bias) and returns x·Aᵀ
// (nil without adapter) for the backward; the caller owns it.
func (e *Engine) linearForward(rec *vk.Recorder, x *vk.Tensor, p *Projection, r int, y *vk.Tensor) (*vk.Tensor, error) {
	xa, err := e.downProject(rec, x, p.A, r, "x·Aᵀ")
	if err != nil {
		return nil, err
	}
	if xa != nil {
		rec.Barrier()
	}
	err = e.project(rec, x, xa, p, y, 0)
	if err == nil {
		err = e.addBiases(rec, []*Projection{p}, []*vk.Tensor{y})
	}
	if err != nil {
		xa.Release()
		return nil, err
	}
	return xa, nil
}

// addBiases records ys[i] += ps[i].Bias (broadcast over rows) for the
// projections that have a bias, after one barrier on the matmuls that wrote
// the ys. The bias is frozen and constant in X, so no backward step exists
// for it: dX and the adapter gradients do not see it.
func (e *Engine) addBiases(rec *vk.Recorder, ps []*Projection, ys []*vk.Tensor) error {
	if !slices.ContainsFunc(ps, func(p *Projection) bool { return p.Bias != nil }) {
		return nil
	}
	rec.Barrier()
	for i, p := range ps {
		if p.Bias == nil {
			continue
		}
		if err := e.k.AddBiasTo(rec, ys[i], p.Bias); err != nil {
			return err
		}
	}
	return nil
}

// adapterGrads records dA = s·gbᵀ·x and dB = s·gᵀ·xa into new tensors.
func (e *Engine) adapterGrads(rec *vk.Recorder, x, xa, g, gb *vk.Tensor, p *Projection) (ProjGrad, error) {
	if gb == nil {
		return ProjGrad{}, nil
	}
	d := p.A.DType()
	var pg ProjGrad
	var err error
	if pg.A, err = e.newOut("dA", d, p.A.Shape()...); err != nil {
		return ProjGrad{}, err
	}
	if pg.B, err = e.newOut("dB", d, p.B.Shape()...); err != nil {
		pg.Release()
		return ProjGrad{}, err
	}
	s := float32(p.Scale)
	err = e.k.Gemm(rec, kernels.Gemm{C: pg.A, A: Dense(gb).T(), B: Dense(x), Alpha: s})
	if err == nil {
		err = e.k.Gemm(rec, kernels.Gemm{C: pg.B, A: Dense(g).T(), B: Dense(xa), Alpha: s})
	}
	if err != nil {
		pg.Release()
		return ProjGrad{}, err
	}
	return pg, nil
}

// inputGrad records dx = beta·dx + g·W + s·gb·A.
func (e *Engine) inputGrad(rec *vk.Recorder, g, gb *vk.Tensor, p *Projection, dx *vk.Tensor, beta float32) error {
	return e.k.Gemm(rec, inputGradGemm(g, gb, p, dx, beta))
}

// inputGradGemm is inputGrad's product.
func inputGradGemm(g, gb *vk.Tensor, p *Projection, dx *vk.Tensor, beta float32) kernels.Gemm {
	gm := kernels.Gemm{C: dx, A: Dense(g), B: p.W.mat(), Alpha: 1, Beta: beta}
	if gb != nil {
		gm.A2, gm.B2, gm.Alpha2 = Dense(gb), Dense(p.A), float32(p.Scale)
	}
	return gm
}

// inputGradSum records dx = Σ_i (gs[i]·W_i + s_i·gbs[i]·A_i) for projections
// that share their input: one product with a K segment per further
// projection (kernels.Seg), which the workgroup-scope kernel runs as one
// deep product and other kernels as one product after another.
func (e *Engine) inputGradSum(rec *vk.Recorder, gs, gbs []*vk.Tensor, ps []*Projection, dx *vk.Tensor) error {
	gm := inputGradGemm(gs[0], gbs[0], ps[0], dx, 0)
	for i := 1; i < len(ps); i++ {
		s := inputGradGemm(gs[i], gbs[i], ps[i], dx, 1)
		gm.Segs = append(gm.Segs, kernels.Seg{A: s.A, B: s.B, A2: s.A2, B2: s.B2, Alpha2: s.Alpha2})
	}
	return e.k.Gemm(rec, gm)
}

// upGrad records g·B [M, r] (f32) and hands it to rec.Hold; nil without adapter.
func (e *Engine) upGrad(rec *vk.Recorder, g *vk.Tensor, p *Projection, r int) (*vk.Tensor, error) {
	if r == 0 {
		return nil, nil
	}
	gb, err := e.newOut("g·B", dtype.F32, g.Dim(0), r)
	if err != nil {
		return nil, err
	}
	rec.Hold(gb)
	return gb, e.k.Gemm(rec, kernels.Gemm{C: gb, A: Dense(g), B: Dense(p.B), Alpha: 1})
}
