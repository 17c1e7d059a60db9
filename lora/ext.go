package lora

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/kernels"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
)

// The extension path: a projection with dropout, a lora_B bias, DoRA or a
// trainable base bias runs through extForward and extBackward, which record
// their own barriers; plain projections keep the batched phases of
// linear.go. The formulas are PEFT's (docs/LORA-MATH.md):
//
//	plain:          Y = X·Wᵀ + s·(Xd·Aᵀ)·Bᵀ + b + s·b_B
//	DoRA:           Y = c ⊙ (X·Wᵀ + s·(X·Aᵀ)·Bᵀ) + b                   c = m/‖W + s·B·A‖_row
//	DoRA, dropout:  Y = (X − Xd)·Wᵀ + c ⊙ (Xd·Wᵀ + s·(Xd·Aᵀ)·Bᵀ) + b
//
// The product c multiplies (z) is saved for dm; Xd is regenerated.

// ext reports whether p needs the extension path.
func (p *Projection) ext() bool {
	return p.BiasTrainable || p.LoRABias != nil || p.Magnitude != nil || p.Dropout.active()
}

// checkExtensions validates the extension fields of a projection with an
// adapter of dtype d and out rows.
func (p *Projection) checkExtensions(name string, out int, d dtype.DType) error {
	if p.Magnitude != nil && p.LoRABias != nil {
		return fmt.Errorf("projection %s: DoRA (magnitude) together with a lora_B bias is refused, as PEFT refuses use_dora with lora_bias: DoRA's norm has no bias term: %w", name, ErrBadInput)
	}
	for _, v := range []struct {
		what string
		t    *vk.Tensor
	}{{"lora_B bias", p.LoRABias}, {"DoRA magnitude", p.Magnitude}} {
		if v.t == nil {
			continue
		}
		if v.t.Released() || v.t.Rank() != 1 || v.t.Dim(0) != out || v.t.DType() != d {
			return fmt.Errorf("projection %s: %s %s must be %s[%d]: %w", name, v.what, v.t, d, out, ErrBadInput)
		}
	}
	return p.Dropout.check(name)
}

// extSaved is what extForward keeps for extBackward.
type extSaved struct {
	drop  *kernels.DropoutSource // the mask of the LoRA input; nil without dropout
	xa    *vk.Tensor             // (X or Xd)·Aᵀ, f32 [M, r]
	z     *vk.Tensor             // DoRA: the product c scales, [M, out]
	rn, c *vk.Tensor             // DoRA: 1/n and m/n, f32 [out]
}

// Release frees the saved tensors; safe twice and on nil.
func (s *extSaved) Release() {
	if s == nil {
		return
	}
	for _, t := range []*vk.Tensor{s.xa, s.z, s.rn, s.c} {
		t.Release()
	}
}

func (s *extSaved) released() bool {
	for _, t := range []*vk.Tensor{s.xa, s.z, s.rn, s.c} {
		if t != nil && t.Released() {
			return true
		}
	}
	return false
}

// dropCache shares one mask, and one Xd, between the projections of a layer
// that share a *Dropout, within one pass.
type dropCache struct {
	src map[*Dropout]kernels.DropoutSource
	xd  map[kernels.DropoutSource]*vk.Tensor
}

func newDropCache() *dropCache {
	return &dropCache{src: map[*Dropout]kernels.DropoutSource{}, xd: map[kernels.DropoutSource]*vk.Tensor{}}
}

// source is d's mask source for this pass over x (drawn once per pass).
func (c *dropCache) source(d *Dropout, x *vk.Tensor) (kernels.DropoutSource, error) {
	if s, ok := c.src[d]; ok {
		return s, nil
	}
	s, err := d.take(x.Dim(0), x.Dim(1))
	if err != nil {
		return s, err
	}
	c.src[d] = s
	return s, nil
}

// undo gives back the generator counters this pass drew: a forward that
// fails leaves each Dropout's Offset where it found it, so that running it
// again draws the masks it would have drawn.
func (c *dropCache) undo() {
	for d, s := range c.src {
		if s.Mask == nil { // take advanced Offset only then
			d.Offset = s.Offset
		}
	}
	clear(c.src)
	clear(c.xd)
}

// dropped records Xd = D(x) for src (once per source), held by rec until
// it completes; the caller records a barrier before reading it.
func (c *dropCache) dropped(e *Engine, rec *vk.Recorder, x *vk.Tensor, src kernels.DropoutSource) (*vk.Tensor, error) {
	if t, ok := c.xd[src]; ok {
		return t, nil
	}
	xd, err := e.temp(rec, "Xd (dropout)", x.DType(), x.Shape()...)
	if err != nil {
		return nil, err
	}
	if err := e.k.Dropout(rec, shaders.DropoutForward, xd, x, src); err != nil {
		return nil, err
	}
	c.xd[src] = xd
	return xd, nil
}

// temp allocates a tensor that rec releases once the recording completes.
func (e *Engine) temp(rec *vk.Recorder, what string, d dtype.DType, shape ...int) (*vk.Tensor, error) {
	t, err := e.newOut(what, d, shape...)
	if err == nil {
		rec.Hold(t)
	}
	return t, err
}

// extForward records y = the projection of x (the formulas above) and
// returns what the backward needs.
func (e *Engine) extForward(rec *vk.Recorder, x *vk.Tensor, p *Projection, r int, y *vk.Tensor, drops *dropCache) (*extSaved, error) {
	m, in := x.Dim(0), x.Dim(1)
	out, d := y.Dim(1), y.DType()
	s := &extSaved{}
	fail := func(err error) (*extSaved, error) {
		s.Release()
		drops.undo() // the layer's forward fails: every draw of the pass
		return nil, err
	}
	lx := x // the LoRA branch's input
	var res *vk.Tensor
	dora := r > 0 && p.Magnitude != nil
	// Phase 1: the dropped input and DoRA's ingredients.
	if r > 0 && p.Dropout.active() {
		src, err := drops.source(p.Dropout, x)
		if err != nil {
			return fail(err)
		}
		s.drop = &src
		if lx, err = drops.dropped(e, rec, x, src); err != nil {
			return fail(err)
		}
		if dora {
			if res, err = e.temp(rec, "X − Xd", d, m, in); err != nil {
				return fail(err)
			}
			if err := e.k.Dropout(rec, shaders.DropoutResidual, res, x, src); err != nil {
				return fail(err)
			}
		}
	}
	var wsq, aw, aa *vk.Tensor
	if dora {
		var err error
		if wsq, aw, aa, err = e.doraInputs(rec, p, r, out); err != nil {
			return fail(err)
		}
	}
	if s.drop != nil || dora {
		rec.Barrier()
	}
	// Phase 2: c and x·Aᵀ.
	var err error
	if dora {
		if s.rn, err = e.newOut("DoRA 1/n", dtype.F32, out); err != nil {
			return fail(err)
		}
		if s.c, err = e.newOut("DoRA m/n", dtype.F32, out); err != nil {
			return fail(err)
		}
		if err := e.k.DoraNorm(rec, s.rn, s.c, wsq, aw, aa, p.B, p.Magnitude, float32(p.Scale)); err != nil {
			return fail(err)
		}
	}
	if s.xa, err = e.downProject(rec, lx, p.A, r, "x·Aᵀ"); err != nil {
		return fail(err)
	}
	rec.Barrier()
	// Phase 3: the products, and DoRA's scaling.
	switch {
	case dora:
		if s.z, err = e.newOut("DoRA product", d, m, out); err != nil {
			return fail(err)
		}
		if err := e.project(rec, lx, s.xa, p, s.z, 0); err != nil {
			return fail(err)
		}
		alpha := float32(0)
		if res != nil {
			alpha = 1
			if err := e.k.Gemm(rec, kernels.Gemm{C: y, A: Dense(res), B: p.W.mat().T(), Alpha: 1}); err != nil {
				return fail(err)
			}
		}
		rec.Barrier()
		if err := e.k.ColScale(rec, y, s.z, s.c, alpha, 0); err != nil {
			return fail(err)
		}
	default:
		if err := e.project(rec, x, s.xa, p, y, 0); err != nil {
			return fail(err)
		}
	}
	// Phase 4: the biases, b and s·b_B, one add each.
	for _, b := range []struct {
		t     *vk.Tensor
		scale float64
	}{{p.Bias, 1}, {p.LoRABias, p.Scale}} {
		if b.t == nil {
			continue
		}
		rec.Barrier()
		if err := e.k.AddScaledBiasTo(rec, y, b.t, float32(b.scale)); err != nil {
			return fail(err)
		}
	}
	return s, nil
}

// doraInputs records ‖W_o‖² (f32 [out]), A·Wᵀ (f32 [r, out]) and A·Aᵀ (f32
// [r, r]), held by rec. An NF4 W's row norms decode it in the kernel, and
// A·Wᵀ decodes its tiles, so no [out, in] matrix is made.
func (e *Engine) doraInputs(rec *vk.Recorder, p *Projection, r, out int) (wsq, aw, aa *vk.Tensor, err error) {
	if wsq, err = e.temp(rec, "DoRA ‖W‖²", dtype.F32, out); err != nil {
		return nil, nil, nil, err
	}
	if aw, err = e.temp(rec, "DoRA A·Wᵀ", dtype.F32, r, out); err != nil {
		return nil, nil, nil, err
	}
	if aa, err = e.temp(rec, "DoRA A·Aᵀ", dtype.F32, r, r); err != nil {
		return nil, nil, nil, err
	}
	if p.W.Dense != nil {
		err = e.k.RowSquares(rec, wsq, p.W.Dense)
	} else {
		err = e.k.RowSquaresNF4(rec, wsq, p.W.NF4) // decoded in the kernel: no [out, in] copy
	}
	if err != nil {
		return nil, nil, nil, err
	}
	if err = e.k.Gemm(rec, kernels.Gemm{C: aw, A: Dense(p.A), B: p.W.mat().T(), Alpha: 1}); err != nil {
		return nil, nil, nil, err
	}
	if err = e.k.Gemm(rec, kernels.Gemm{C: aa, A: Dense(p.A), B: Dense(p.A).T(), Alpha: 1}); err != nil {
		return nil, nil, nil, err
	}
	return wsq, aw, aa, nil
}

// extBack carries what the input-gradient half of an extension backward
// leaves for the parameter half: G ⊙ c (or G) and (G ⊙ c)·B.
type extBack struct{ gc, gb *vk.Tensor }

// extBackward records the gradients of an extension-path projection for
// the upstream gradient g, and dx = beta·dx + dX.
func (e *Engine) extBackward(rec *vk.Recorder, x *vk.Tensor, s *extSaved, g *vk.Tensor, p *Projection, r int, dx *vk.Tensor, beta float32, drops *dropCache) (ProjGrad, error) {
	bk, err := e.extBackInput(rec, s, g, p, r, dx, beta)
	if err != nil {
		return ProjGrad{}, err
	}
	return e.extBackParams(rec, x, s, g, p, bk, drops)
}

// extBackInput records dx = beta·dx + dX, which needs no input X: the
// dropout mask is regenerated from its source. The gated MLP runs it
// before h, the down projection's input, is recomputed.
func (e *Engine) extBackInput(rec *vk.Recorder, s *extSaved, g *vk.Tensor, p *Projection, r int, dx *vk.Tensor, beta float32) (*extBack, error) {
	m, out, d := g.Dim(0), g.Dim(1), g.DType()
	in := dx.Dim(1)
	bk := &extBack{gc: g}
	var gm1 *vk.Tensor // G ⊙ (c − 1), DoRA with dropout
	var err error
	if s.c != nil {
		if bk.gc, err = e.temp(rec, "G ⊙ c", d, m, out); err != nil {
			return nil, err
		}
		if err := e.k.ColScale(rec, bk.gc, g, s.c, 0, 0); err != nil {
			return nil, err
		}
		if s.drop != nil {
			if gm1, err = e.temp(rec, "G ⊙ (c − 1)", d, m, out); err != nil {
				return nil, err
			}
			if err := e.k.ColScale(rec, gm1, g, s.c, 0, -1); err != nil {
				return nil, err
			}
		}
		rec.Barrier()
	}
	if bk.gb, err = e.upGrad(rec, bk.gc, p, r); err != nil {
		return nil, err
	}
	if bk.gb != nil {
		rec.Barrier()
	}
	if s.drop == nil {
		return bk, e.inputGrad(rec, bk.gc, bk.gb, p, dx, beta)
	}
	// dX = G·W + D(T), T = s·(Gc·B)·A (+ (G ⊙ (c − 1))·W with DoRA).
	if err := e.inputGrad(rec, g, nil, p, dx, beta); err != nil {
		return nil, err
	}
	if gm1 == nil {
		// T's elements are summed in the kernel that adds them, never stored.
		rec.Barrier()
		return bk, e.k.DropoutExpand(rec, dx, bk.gb, p.A, float32(p.Scale), *s.drop)
	}
	t, err := e.temp(rec, "dropout backward T", d, m, in)
	if err != nil {
		return nil, err
	}
	if err := e.inputGrad(rec, gm1, bk.gb, p, t, 0); err != nil {
		return nil, err
	}
	rec.Barrier()
	return bk, e.k.Dropout(rec, shaders.DropoutAdd, dx, t, *s.drop)
}

// extBackParams records dA, dB and the extensions' gradients, for the
// projection's input x; it records a barrier first.
func (e *Engine) extBackParams(rec *vk.Recorder, x *vk.Tensor, s *extSaved, g *vk.Tensor, p *Projection, bk *extBack, drops *dropCache) (ProjGrad, error) {
	var pg ProjGrad
	fail := func(err error) (ProjGrad, error) {
		pg.Release()
		return ProjGrad{}, err
	}
	out, d := g.Dim(1), g.DType()
	rec.Barrier()
	lx := x
	var err error
	if s.drop != nil {
		if lx, err = drops.dropped(e, rec, x, *s.drop); err != nil {
			return fail(err)
		}
	}
	if s.c != nil {
		if pg.Magnitude, err = e.newOut("dm", d, out); err != nil {
			return fail(err)
		}
		if err := e.k.ColSum(rec, pg.Magnitude, g, s.z, s.rn, 1); err != nil {
			return fail(err)
		}
	}
	if p.LoRABias != nil {
		if pg.LoRABias, err = e.newOut("d lora_B bias", d, out); err != nil {
			return fail(err)
		}
		if err := e.k.ColSum(rec, pg.LoRABias, g, nil, nil, float32(p.Scale)); err != nil {
			return fail(err)
		}
	}
	if p.BiasTrainable {
		if pg.Bias, err = e.newOut("d bias", d, out); err != nil {
			return fail(err)
		}
		if err := e.k.ColSum(rec, pg.Bias, g, nil, nil, 1); err != nil {
			return fail(err)
		}
	}
	if bk.gb != nil {
		if s.drop != nil {
			rec.Barrier() // Xd was just regenerated
		}
		ag, err := e.adapterGrads(rec, lx, s.xa, bk.gc, bk.gb, p)
		if err != nil {
			return fail(err)
		}
		pg.A, pg.B = ag.A, ag.B
	}
	return pg, nil
}
