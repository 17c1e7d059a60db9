package lora

import (
	"fmt"

	"github.com/vklora/vklora/vk"
)

// QKV is the attention input projections (axolotl's LoRA_QKV): three LoRA
// projections of one X. K and V may be narrower than Q (grouped-query
// attention). The backward sums the three contributions into one dX.
type QKV struct {
	Engine  *Engine
	Q, K, V *Projection
}

// QKVSaved is what QKV.Forward keeps: a reference to X and x·Aᵀ of each
// projection.
type QKVSaved struct {
	x   *vk.Tensor
	xa  [3]*vk.Tensor
	ext [3]*extSaved // the extension path's contexts (ext.go), per projection
}

// Release frees the saved intermediates (never X); safe twice.
func (s *QKVSaved) Release() {
	if s != nil {
		for i, t := range s.xa {
			t.Release()
			s.ext[i].Release()
		}
	}
}

type projInfo struct {
	out, in, r int
}

func (l *QKV) projs() [3]*Projection { return [3]*Projection{l.Q, l.K, l.V} }

// check validates the three projections: same input width and dtype.
func (l *QKV) check(op string) ([3]projInfo, error) {
	var info [3]projInfo
	if l == nil || l.Engine == nil {
		return info, fmt.Errorf("lora: QKV.%s: layer or engine is nil: %w", op, ErrBadInput)
	}
	names := [3]string{"q", "k", "v"}
	d0 := l.Q.W.mat()
	for i, p := range l.projs() {
		out, in, r, d, err := p.shape(names[i])
		if err != nil {
			return info, fmt.Errorf("lora: QKV.%s: %w", op, err)
		}
		if i > 0 && (in != info[0].in || d != d0.DType()) {
			return info, fmt.Errorf("lora: QKV.%s: projection %s takes %s[·,%d] but q takes %s[·,%d]: %w",
				op, names[i], d, in, d0.DType(), info[0].in, ErrBadInput)
		}
		info[i] = projInfo{out, in, r}
	}
	return info, nil
}

// Forward records Q, K, V = lin_q(X), lin_k(X), lin_v(X) for X [M, in],
// each with its projection's bias when it has one.
func (l *QKV) Forward(rec *vk.Recorder, x *vk.Tensor) (q, k, v *vk.Tensor, saved *QKVSaved, err error) {
	info, err := l.check("Forward")
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if rec == nil {
		return nil, nil, nil, nil, fmt.Errorf("lora: QKV.Forward: recorder is nil: %w", ErrBadInput)
	}
	d := l.Q.W.mat().DType()
	m, err := checkInput("X", x, info[0].in, d)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("lora: QKV.Forward: %w", err)
	}
	e := l.Engine
	s := &QKVSaved{x: x}
	var ys [3]*vk.Tensor
	fail := func(err error) (*vk.Tensor, *vk.Tensor, *vk.Tensor, *QKVSaved, error) {
		s.Release()
		for _, y := range ys {
			y.Release()
		}
		return nil, nil, nil, nil, err
	}
	// Plain projections in batched phases; those with PEFT extensions each
	// on the extension path, sharing masks where they share a *Dropout.
	adapters := false
	var plain []*Projection
	var plainYs []*vk.Tensor
	for i, p := range l.projs() {
		if p.ext() {
			continue
		}
		if s.xa[i], err = e.downProject(rec, x, p.A, info[i].r, "x·Aᵀ"); err != nil {
			return fail(err)
		}
		adapters = adapters || s.xa[i] != nil
	}
	if adapters {
		rec.Barrier()
	}
	for i, p := range l.projs() {
		if ys[i], err = e.newOut("QKV output", d, m, info[i].out); err != nil {
			return fail(err)
		}
		if p.ext() {
			continue
		}
		if err := e.project(rec, x, s.xa[i], p, ys[i], 0); err != nil {
			return fail(err)
		}
		plain, plainYs = append(plain, p), append(plainYs, ys[i])
	}
	if err := e.addBiases(rec, plain, plainYs); err != nil {
		return fail(err)
	}
	drops := newDropCache()
	for i, p := range l.projs() {
		if p.ext() {
			if s.ext[i], err = e.extForward(rec, x, p, info[i].r, ys[i], drops); err != nil {
				return fail(err)
			}
		}
	}
	return ys[0], ys[1], ys[2], s, nil
}

// Backward records one dX [M, in] = Σ_p (G_p·W_p + s_p·(G_p·B_p)·A_p) and the
// adapter gradients of q, k and v.
func (l *QKV) Backward(rec *vk.Recorder, saved *QKVSaved, gq, gk, gv *vk.Tensor) (*vk.Tensor, [3]ProjGrad, error) {
	var grads [3]ProjGrad
	info, err := l.check("Backward")
	if err != nil {
		return nil, grads, err
	}
	if rec == nil || saved == nil {
		return nil, grads, fmt.Errorf("lora: QKV.Backward: recorder or saved context is nil: %w", ErrBadInput)
	}
	d := l.Q.W.mat().DType()
	m := saved.x.Dim(0)
	gs := [3]*vk.Tensor{gq, gk, gv}
	names := [3]string{"grad Q", "grad K", "grad V"}
	for i, g := range gs {
		if err := checkMatrix(names[i], g, m, info[i].out, d); err != nil {
			return nil, grads, fmt.Errorf("lora: QKV.Backward: %w", err)
		}
	}
	e := l.Engine
	// The forward's results (and any caller's gradient) must be written
	// before this reads them: the backward records its own barrier, so
	// Forward and Backward may share one recording without one in between.
	rec.Barrier()
	dx, err := e.newOut("dX", d, m, info[0].in)
	if err != nil {
		return nil, grads, err
	}
	fail := func(err error) (*vk.Tensor, [3]ProjGrad, error) {
		dx.Release()
		for i := range grads {
			grads[i].Release()
		}
		return nil, [3]ProjGrad{}, err
	}
	for _, sv := range saved.ext {
		if sv != nil && sv.released() {
			return fail(fmt.Errorf("lora: QKV.Backward: the saved context is released: %w", ErrBadInput))
		}
	}
	var gb [3]*vk.Tensor
	for i, p := range l.projs() {
		if saved.ext[i] != nil {
			continue
		}
		if gb[i], err = e.upGrad(rec, gs[i], p, info[i].r); err != nil {
			return fail(err)
		}
	}
	rec.Barrier()
	for i, p := range l.projs() {
		if saved.ext[i] != nil {
			continue
		}
		if grads[i], err = e.adapterGrads(rec, saved.x, saved.xa[i], gs[i], gb[i], p); err != nil {
			return fail(err)
		}
	}
	if saved.ext == [3]*extSaved{} {
		ps := l.projs()
		if err := e.inputGradSum(rec, gs[:], gb[:], ps[:], dx); err != nil {
			return fail(err)
		}
		return dx, grads, nil
	}
	drops := newDropCache()
	// dX accumulates: each projection's term after a barrier on the last.
	for i, p := range l.projs() {
		if i > 0 {
			rec.Barrier()
		}
		beta := float32(1)
		if i == 0 {
			beta = 0
		}
		if saved.ext[i] != nil {
			if grads[i], err = e.extBackward(rec, saved.x, saved.ext[i], gs[i], p, info[i].r, dx, beta, drops); err != nil {
				return fail(err)
			}
			continue
		}
		if err := e.inputGrad(rec, gs[i], gb[i], p, dx, beta); err != nil {
			return fail(err)
		}
	}
	return dx, grads, nil
}
