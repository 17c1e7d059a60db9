package lora

import (
	"fmt"

	"github.com/vklora/vklora/vk"
)

// MLP is a gated MLP with LoRA on all three projections (axolotl's
// LoRA_MLP): e = lin_gate(X), g = lin_up(X), h = act(e)·g, Y = lin_down(h).
// Gate and Up are [I, H], Down is [H, I]; each may have a bias (e and g
// include theirs, as nn.Linear's outputs do).
type MLP struct {
	Engine         *Engine
	Gate, Up, Down *Projection
	Act            Activation
	// KeepSaved keeps the saved context intact so that Backward may run
	// more than once on it (PyTorch's retain_graph): Backward then allocates
	// de and dg, two more [M, I] tensors. By default (false) Backward
	// overwrites the saved e and g with de and dg, and the context serves
	// one Backward only. X is never written either way.
	KeepSaved bool
}

// MLPSaved is what MLP.Forward keeps for Backward: a reference to X, the
// pre-activations e and g [M, I] (h is recomputed, not saved) and x·Aᵀ of
// gate and up and h·Adᵀ of down ([M, r] each).
type MLPSaved struct {
	x, e, g  *vk.Tensor
	xa       [3]*vk.Tensor
	ext      [3]*extSaved // the extension path's contexts (ext.go), per projection
	consumed bool
}

// released reports whether any tensor the backward reads is gone.
func (s *MLPSaved) released() bool {
	if s.x.Released() || s.e.Released() || s.g.Released() {
		return true
	}
	for i, t := range s.xa {
		if (t != nil && t.Released()) || (s.ext[i] != nil && s.ext[i].released()) {
			return true
		}
	}
	return false
}

// Release frees the saved tensors (never X); safe twice.
func (s *MLPSaved) Release() {
	if s == nil {
		return
	}
	s.e.Release()
	s.g.Release()
	for i, t := range s.xa {
		t.Release()
		s.ext[i].Release()
	}
}

func (l *MLP) projs() [3]*Projection { return [3]*Projection{l.Gate, l.Up, l.Down} }

func (l *MLP) check(op string) (info [3]projInfo, err error) {
	if l == nil || l.Engine == nil {
		return info, fmt.Errorf("lora: MLP.%s: layer or engine is nil: %w", op, ErrBadInput)
	}
	if !l.Act.Valid() {
		return info, fmt.Errorf("lora: MLP.%s: activation %v is not set: %w", op, l.Act, ErrBadInput)
	}
	names := [3]string{"gate", "up", "down"}
	var ds [3]string
	for i, p := range l.projs() {
		out, in, r, d, err := p.shape(names[i])
		if err != nil {
			return info, fmt.Errorf("lora: MLP.%s: %w", op, err)
		}
		info[i], ds[i] = projInfo{out, in, r}, d.String()
	}
	g, u, dn := info[0], info[1], info[2]
	if g.out != u.out || g.in != u.in || dn.in != g.out || dn.out != g.in || ds[0] != ds[1] || ds[0] != ds[2] {
		return info, fmt.Errorf("lora: MLP.%s: gate %s[%d %d], up %s[%d %d], down %s[%d %d] must be [I,H], [I,H], [H,I] of one dtype: %w",
			op, ds[0], g.out, g.in, ds[1], u.out, u.in, ds[2], dn.out, dn.in, ErrBadInput)
	}
	return info, nil
}

// Forward records Y [M, H] for X [M, H].
func (l *MLP) Forward(rec *vk.Recorder, x *vk.Tensor) (*vk.Tensor, *MLPSaved, error) {
	info, err := l.check("Forward")
	if err != nil {
		return nil, nil, err
	}
	if rec == nil {
		return nil, nil, fmt.Errorf("lora: MLP.Forward: recorder is nil: %w", ErrBadInput)
	}
	d := l.Gate.W.mat().DType()
	hdim, idim := info[0].in, info[0].out
	m, err := checkInput("X", x, hdim, d)
	if err != nil {
		return nil, nil, fmt.Errorf("lora: MLP.Forward: %w", err)
	}
	e := l.Engine
	s := &MLPSaved{x: x}
	var y, h *vk.Tensor
	// The dropout masks of gate and up (shared where they share a
	// *Dropout), and of down, which sees h.
	drops, downDrops := newDropCache(), newDropCache()
	fail := func(err error) (*vk.Tensor, *MLPSaved, error) {
		s.Release()
		y.Release()
		h.Release()
		drops.undo()
		downDrops.undo()
		return nil, nil, err
	}
	for i, p := range []*Projection{l.Gate, l.Up} {
		if p.ext() {
			continue
		}
		if s.xa[i], err = e.downProject(rec, x, p.A, info[i].r, "x·Aᵀ"); err != nil {
			return fail(err)
		}
	}
	if s.xa[0] != nil || s.xa[1] != nil {
		rec.Barrier()
	}
	if s.e, err = e.newOut("e (gate)", d, m, idim); err != nil {
		return fail(err)
	}
	if s.g, err = e.newOut("g (up)", d, m, idim); err != nil {
		return fail(err)
	}
	// Plain projections batched; those with PEFT extensions on the
	// extension path, sharing a mask where they share a *Dropout.
	var plain []*Projection
	var plainYs []*vk.Tensor
	for i, p := range []*Projection{l.Gate, l.Up} {
		y := [2]*vk.Tensor{s.e, s.g}[i]
		if p.ext() {
			continue
		}
		if err := e.project(rec, x, s.xa[i], p, y, 0); err != nil {
			return fail(err)
		}
		plain, plainYs = append(plain, p), append(plainYs, y)
	}
	// e and g are saved with their biases: the backward's act(e) needs them.
	if err := e.addBiases(rec, plain, plainYs); err != nil {
		return fail(err)
	}
	for i, p := range []*Projection{l.Gate, l.Up} {
		if p.ext() {
			if s.ext[i], err = e.extForward(rec, x, p, info[i].r, [2]*vk.Tensor{s.e, s.g}[i], drops); err != nil {
				return fail(err)
			}
		}
	}
	rec.Barrier()
	if h, err = e.newOut("h", d, m, idim); err != nil {
		return fail(err)
	}
	if err := e.k.Gated(rec, l.Act, false, d, m*idim, idim, s.e.Binding(), s.g.Binding(), h.Binding()); err != nil {
		return fail(err)
	}
	rec.Barrier()
	if y, err = e.newOut("Y", d, m, hdim); err != nil {
		return fail(err)
	}
	if l.Down.ext() {
		if s.ext[2], err = e.extForward(rec, h, l.Down, info[2].r, y, downDrops); err != nil {
			return fail(err)
		}
	} else {
		// h·Adᵀ is saved for dB of down; h itself is not (recomputed in backward).
		if s.xa[2], err = e.downProject(rec, h, l.Down.A, info[2].r, "h·Aᵀ"); err != nil {
			return fail(err)
		}
		if s.xa[2] != nil {
			rec.Barrier()
		}
		if err := e.project(rec, h, s.xa[2], l.Down, y, 0); err != nil {
			return fail(err)
		}
		if err := e.addBiases(rec, []*Projection{l.Down}, []*vk.Tensor{y}); err != nil {
			return fail(err)
		}
	}
	// h's last reader is recorded: a backward in this recording may reuse
	// its memory for dh (see Backward's temp).
	rec.Hold(h)
	_ = rec.Recycle(h) // cannot fail: h is live and held just above
	return y, s, nil
}

// Backward records dX [M, H] and the adapter gradients of gate, up and down
// for the upstream gradient gy [M, H]. By default the saved e and g are
// overwritten (the context serves one Backward only; a second returns an
// ErrBadInput error); with KeepSaved they are kept and Backward may run again.
func (l *MLP) Backward(rec *vk.Recorder, saved *MLPSaved, gy *vk.Tensor) (*vk.Tensor, [3]ProjGrad, error) {
	var grads [3]ProjGrad
	info, err := l.check("Backward")
	if err != nil {
		return nil, grads, err
	}
	if rec == nil || saved == nil {
		return nil, grads, fmt.Errorf("lora: MLP.Backward: recorder or saved context is nil: %w", ErrBadInput)
	}
	if saved.consumed {
		return nil, grads, fmt.Errorf("lora: MLP.Backward: the saved context was consumed by its Backward (set MLP.KeepSaved to run Backward more than once): %w", ErrBadInput)
	}
	if saved.released() {
		return nil, grads, fmt.Errorf("lora: MLP.Backward: the saved context (or its X) was released: %w", ErrBadInput)
	}
	d := l.Gate.W.mat().DType()
	m, hdim, idim := saved.x.Dim(0), info[0].in, info[0].out
	if err := checkMatrix("grad Y", gy, m, hdim, d); err != nil {
		return nil, grads, fmt.Errorf("lora: MLP.Backward: %w", err)
	}
	e := l.Engine
	// The forward's results (and any caller's gradient) must be written
	// before this reads them: the backward records its own barrier, so
	// Forward and Backward may share one recording without one in between.
	rec.Barrier()
	var dx, dh, h, de, dg *vk.Tensor
	fail := func(err error) (*vk.Tensor, [3]ProjGrad, error) {
		dx.Release()
		for i := range grads {
			grads[i].Release()
		}
		return nil, [3]ProjGrad{}, err
	}
	// Temporaries first take memory the recording has recycled (the
	// forward's h when forward and backward share a recording).
	temp := func(what string) (*vk.Tensor, error) {
		if t, ok := rec.Reuse(d, m, idim); ok {
			return t, nil
		}
		t, err := e.newOut(what, d, m, idim)
		if err == nil {
			rec.Hold(t)
		}
		return t, err
	}
	// dh = G·Wd + sd·(G·Bd)·Ad
	if dh, err = temp("dh"); err != nil {
		return fail(err)
	}
	var gbDown *vk.Tensor
	var downBack *extBack
	if saved.ext[2] != nil {
		if downBack, err = e.extBackInput(rec, saved.ext[2], gy, l.Down, info[2].r, dh, 0); err != nil {
			return fail(err)
		}
	} else {
		if gbDown, err = e.upGrad(rec, gy, l.Down, info[2].r); err != nil {
			return fail(err)
		}
		if gbDown != nil {
			rec.Barrier()
		}
		if err := e.inputGrad(rec, gy, gbDown, l.Down, dh, 0); err != nil {
			return fail(err)
		}
	}
	rec.Barrier()
	// One elementwise pass: h, de, dg from dh, e, g. h goes to dh's own
	// buffer (the pass reads each element of dh before writing h there);
	// de and dg overwrite the saved e and g unless the context is kept.
	h = dh
	if !l.KeepSaved {
		de, dg = saved.e, saved.g
		saved.consumed = true
	} else {
		if de, err = temp("de"); err != nil {
			return fail(err)
		}
		if dg, err = temp("dg"); err != nil {
			return fail(err)
		}
	}
	if err := e.k.Gated(rec, l.Act, true, d, m*idim, idim, saved.e.Binding(), saved.g.Binding(), dh.Binding(),
		h.Binding(), de.Binding(), dg.Binding()); err != nil {
		return fail(err)
	}
	rec.Barrier()
	if downBack != nil {
		if grads[2], err = e.extBackParams(rec, h, saved.ext[2], gy, l.Down, downBack, newDropCache()); err != nil {
			return fail(err)
		}
	} else if grads[2], err = e.adapterGrads(rec, h, saved.xa[2], gy, gbDown, l.Down); err != nil {
		return fail(err)
	}
	var gbUp, gbGate *vk.Tensor
	if saved.ext[1] == nil {
		if gbUp, err = e.upGrad(rec, dg, l.Up, info[1].r); err != nil {
			return fail(err)
		}
	}
	if saved.ext[0] == nil {
		if gbGate, err = e.upGrad(rec, de, l.Gate, info[0].r); err != nil {
			return fail(err)
		}
	}
	rec.Barrier()
	if saved.ext[1] == nil {
		if grads[1], err = e.adapterGrads(rec, saved.x, saved.xa[1], dg, gbUp, l.Up); err != nil {
			return fail(err)
		}
	}
	if saved.ext[0] == nil {
		if grads[0], err = e.adapterGrads(rec, saved.x, saved.xa[0], de, gbGate, l.Gate); err != nil {
			return fail(err)
		}
	}
	if dx, err = e.newOut("dX", d, m, hdim); err != nil {
		return fail(err)
	}
	if saved.ext[0] == nil && saved.ext[1] == nil {
		err := e.inputGradSum(rec, []*vk.Tensor{dg, de}, []*vk.Tensor{gbUp, gbGate}, []*Projection{l.Up, l.Gate}, dx)
		if err != nil {
			return fail(err)
		}
		return dx, grads, nil
	}
	drops := newDropCache()
	if saved.ext[1] != nil {
		if grads[1], err = e.extBackward(rec, saved.x, saved.ext[1], dg, l.Up, info[1].r, dx, 0, drops); err != nil {
			return fail(err)
		}
	} else if err := e.inputGrad(rec, dg, gbUp, l.Up, dx, 0); err != nil {
		return fail(err)
	}
	rec.Barrier()
	if saved.ext[0] != nil {
		if grads[0], err = e.extBackward(rec, saved.x, saved.ext[0], de, l.Gate, info[0].r, dx, 1, drops); err != nil {
			return fail(err)
		}
	} else if err := e.inputGrad(rec, de, gbGate, l.Gate, dx, 1); err != nil {
		return fail(err)
	}
	return dx, grads, nil
}
