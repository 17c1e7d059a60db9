package lora

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
)

// O is a single LoRA projection with a backward pass (axolotl's LoRA_O):
// the attention output projection, or any adapted linear layer.
type O struct {
	Engine *Engine
	Proj   *Projection
}

// OSaved is what O.Forward keeps for O.Backward: a reference to X (not a
// copy: the caller must not change X before backward) and x·Aᵀ [M, r].
type OSaved struct {
	x, xa *vk.Tensor
	ext   *extSaved // the extension path's context (ext.go), else nil
}

// Release frees what the forward saved (never X itself); safe twice.
func (s *OSaved) Release() {
	if s != nil {
		s.xa.Release()
		s.ext.Release()
	}
}

// Forward records Y = X·Wᵀ + s·(X·Aᵀ)·Bᵀ (+ bias); X is [M, in], Y is
// [M, out].
func (l *O) Forward(rec *vk.Recorder, x *vk.Tensor) (*vk.Tensor, *OSaved, error) {
	if l == nil || l.Engine == nil || rec == nil {
		return nil, nil, fmt.Errorf("lora: O.Forward: layer, engine or recorder is nil: %w", ErrBadInput)
	}
	out, in, r, d, err := l.Proj.shape("o")
	if err != nil {
		return nil, nil, fmt.Errorf("lora: O.Forward: %w", err)
	}
	m, err := checkInput("X", x, in, d)
	if err != nil {
		return nil, nil, fmt.Errorf("lora: O.Forward: %w", err)
	}
	y, err := l.Engine.newOut("Y", d, m, out)
	if err != nil {
		return nil, nil, err
	}
	if l.Proj.ext() {
		ext, err := l.Engine.extForward(rec, x, l.Proj, r, y, newDropCache())
		if err != nil {
			y.Release()
			return nil, nil, err
		}
		return y, &OSaved{x: x, ext: ext}, nil
	}
	xa, err := l.Engine.linearForward(rec, x, l.Proj, r, y)
	if err != nil {
		y.Release()
		return nil, nil, err
	}
	return y, &OSaved{x: x, xa: xa}, nil
}

// Backward records dX [M, in] and the adapter gradients for the upstream
// gradient gy [M, out] (the frozen bias has none and does not enter dX). It
// consumes nothing: saved stays valid.
func (l *O) Backward(rec *vk.Recorder, saved *OSaved, gy *vk.Tensor) (*vk.Tensor, ProjGrad, error) {
	if l == nil || l.Engine == nil || rec == nil || saved == nil {
		return nil, ProjGrad{}, fmt.Errorf("lora: O.Backward: layer, engine, recorder or saved context is nil: %w", ErrBadInput)
	}
	out, in, r, d, err := l.Proj.shape("o")
	if err != nil {
		return nil, ProjGrad{}, fmt.Errorf("lora: O.Backward: %w", err)
	}
	if err := checkMatrix("grad Y", gy, saved.x.Dim(0), out, d); err != nil {
		return nil, ProjGrad{}, fmt.Errorf("lora: O.Backward: %w", err)
	}
	dx, err := l.Engine.newOut("dX", d, saved.x.Dim(0), in)
	if err != nil {
		return nil, ProjGrad{}, err
	}
	e := l.Engine
	// The forward's results (and any caller's gradient) must be written
	// before this reads them: the backward records its own barrier, so
	// Forward and Backward may share one recording without one in between.
	rec.Barrier()
	if saved.ext != nil {
		if saved.ext.released() {
			dx.Release()
			return nil, ProjGrad{}, fmt.Errorf("lora: O.Backward: the saved context is released: %w", ErrBadInput)
		}
		pg, err := e.extBackward(rec, saved.x, saved.ext, gy, l.Proj, r, dx, 0, newDropCache())
		if err != nil {
			dx.Release()
			return nil, ProjGrad{}, err
		}
		return dx, pg, nil
	}
	gb, err := e.upGrad(rec, gy, l.Proj, r)
	if err != nil {
		dx.Release()
		return nil, ProjGrad{}, err
	}
	if gb != nil {
		rec.Barrier()
	}
	pg, err := e.adapterGrads(rec, saved.x, saved.xa, gy, gb, l.Proj)
	if err == nil {
		if err = e.inputGrad(rec, gy, gb, l.Proj, dx, 0); err != nil {
			pg.Release()
		}
	}
	if err != nil {
		dx.Release()
		return nil, ProjGrad{}, err
	}
	return dx, pg, nil
}

// checkMatrix validates a 2-D tensor argument: present, [m, n], of dtype d.
func checkMatrix(name string, t *vk.Tensor, m, n int, d dtype.DType) error {
	if t == nil || t.Released() {
		return fmt.Errorf("%s is nil or released: %w", name, ErrBadInput)
	}
	if t.Rank() != 2 || t.Dim(0) != m || t.Dim(1) != n || t.DType() != d {
		return fmt.Errorf("%s %s must be %s[%d %d]: %w", name, t, d, m, n, ErrBadInput)
	}
	return nil
}
