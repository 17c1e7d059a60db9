package optim

import (
	"fmt"
	"math"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
)

// GradAccumulator sums micro-batch gradients into one f32 tensor per
// parameter, for gradient accumulation: Add each micro-batch's gradients,
// pass Grads to AdamW.Step once, then ZeroGrad before the next batch. The
// sums are f32 whatever the parameters' dtype (a 16-bit gradient is widened
// exactly), each addition acc + scale·g rounded once: with scale 1 and f32
// gradients this is torch's p.grad accumulation over backward passes.
//
// (To accumulate in the parameters' own dtype instead, as torch does for
// bf16 parameters, add into a gradient tensor with lora.Engine.AddTo, the
// add that package autograd uses for a Var's contributions.)
type GradAccumulator struct {
	dev      *vk.Device
	names    []string
	acc      []*vk.Tensor
	released bool
}

// NewGradAccumulator allocates zeroed f32 accumulators shaped like params
// (only the names and shapes are used), zeroing them in a submission of its
// own. Argument errors wrap ErrBadInput.
func NewGradAccumulator(dev *vk.Device, params []Param) (_ *GradAccumulator, err error) {
	var a *GradAccumulator // released if anything fails once it exists
	defer func() {
		recoverTo(&err, "NewGradAccumulator", recover())
		if err != nil {
			a.Release()
		}
	}()
	if dev == nil || dev.Released() {
		return nil, fmt.Errorf("optim: NewGradAccumulator: device is nil or released: %w", ErrBadInput)
	}
	if err := checkParams("NewGradAccumulator", params); err != nil {
		return nil, err
	}
	a = &GradAccumulator{dev: dev}
	for _, p := range params {
		t, err := dev.NewTensor(dtype.F32, p.Tensor.Shape()...)
		if err != nil {
			return nil, fmt.Errorf("optim: NewGradAccumulator: accumulator of %q %s: %w", p.Name, p.Tensor, err)
		}
		a.names = append(a.names, p.Name)
		a.acc = append(a.acc, t)
	}
	rec, err := dev.NewRecorder()
	if err != nil {
		return nil, fmt.Errorf("optim: NewGradAccumulator: %w", err)
	}
	defer rec.Release()
	if err := a.fill(rec); err != nil {
		return nil, err
	}
	if err := rec.Submit(); err != nil {
		return nil, fmt.Errorf("optim: NewGradAccumulator: zeroing: %w", err)
	}
	return a, nil
}

// Add records acc[i] += scale·grads[i] for every parameter: a barrier
// first (so gradients computed earlier in the recording are seen), then the
// adds, then a barrier (so a later Add or Step sees the sums). grads[i] has
// parameter i's shape and any float dtype; scale is finite (1/N averages N
// micro-batches, like dividing the loss by N up to rounding). Argument
// errors wrap ErrBadInput and are found before anything is recorded.
func (a *GradAccumulator) Add(rec *vk.Recorder, grads []*vk.Tensor, scale float32) (err error) {
	defer func() { recoverTo(&err, "GradAccumulator.Add", recover()) }()
	if err := a.alive("Add"); err != nil {
		return err
	}
	switch {
	case rec == nil:
		return fmt.Errorf("optim: GradAccumulator.Add: recorder is nil: %w", ErrBadInput)
	case rec.Device() != a.dev:
		return fmt.Errorf("optim: GradAccumulator.Add: the recorder belongs to another device: %w", ErrBadInput)
	case math.IsNaN(float64(scale)) || math.IsInf(float64(scale), 0):
		return fmt.Errorf("optim: GradAccumulator.Add: scale %v is not finite: %w", scale, ErrBadInput)
	case len(grads) != len(a.acc):
		return fmt.Errorf("optim: GradAccumulator.Add: %d gradients for %d params: %w", len(grads), len(a.acc), ErrBadInput)
	}
	for i, g := range grads {
		acc := a.acc[i]
		switch {
		case g == nil || g.Released():
			return fmt.Errorf("optim: GradAccumulator.Add: gradient of %q %s is nil or released: %w", a.names[i], acc, ErrBadInput)
		case !g.DType().IsFloat():
			return fmt.Errorf("optim: GradAccumulator.Add: gradient %s of %q must be f32, f16 or bf16: %w", g, a.names[i], ErrBadInput)
		case !sameShape(g.Shape(), acc.Shape()):
			return fmt.Errorf("optim: GradAccumulator.Add: gradient %s of %q must have shape %v: %w", g, a.names[i], acc.Shape(), ErrBadInput)
		}
		for j, o := range a.acc {
			if vk.Overlaps(g, o) {
				return fmt.Errorf("optim: GradAccumulator.Add: gradient %s of %q shares memory with the accumulator of %q: %w", g, a.names[i], a.names[j], ErrBadInput)
			}
		}
	}
	ks := make([]*vk.Kernel, len(grads))
	for i, g := range grads {
		if ks[i], err = accKernel(a.dev, g.DType()); err != nil {
			return fmt.Errorf("optim: GradAccumulator.Add: %w", err)
		}
	}
	rec.Barrier()
	for i, g := range grads {
		if err := accumulate(a.dev, rec, ks[i], a.acc[i], g, scale); err != nil {
			return fmt.Errorf("optim: GradAccumulator.Add: %q: %w", a.names[i], err)
		}
	}
	rec.Barrier()
	return nil
}

// ZeroGrad records the zeroing of every accumulator, between barriers (so
// a Step reading them earlier in the recording has finished, and a later
// Add sees zeros).
func (a *GradAccumulator) ZeroGrad(rec *vk.Recorder) (err error) {
	defer func() { recoverTo(&err, "GradAccumulator.ZeroGrad", recover()) }()
	if err := a.alive("ZeroGrad"); err != nil {
		return err
	}
	if rec == nil {
		return fmt.Errorf("optim: GradAccumulator.ZeroGrad: recorder is nil: %w", ErrBadInput)
	}
	if rec.Device() != a.dev {
		return fmt.Errorf("optim: GradAccumulator.ZeroGrad: the recorder belongs to another device: %w", ErrBadInput)
	}
	rec.Barrier()
	if err := a.fill(rec); err != nil {
		return err
	}
	rec.Barrier()
	return nil
}

func (a *GradAccumulator) fill(rec *vk.Recorder) error {
	for i, t := range a.acc {
		if err := rec.Fill(t.Binding(), 0); err != nil {
			return fmt.Errorf("optim: zeroing the accumulator of %q: %w", a.names[i], err)
		}
	}
	return nil
}

// Grads returns the f32 accumulators, in parameter order: the gradients to
// pass to AdamW.Step. They stay the accumulator's (Release frees them).
func (a *GradAccumulator) Grads() []*vk.Tensor { return append([]*vk.Tensor(nil), a.acc...) }

func (a *GradAccumulator) alive(fn string) error {
	if a == nil || a.released {
		return fmt.Errorf("optim: GradAccumulator.%s: accumulator is nil or released: %w", fn, vk.ErrReleased)
	}
	return nil
}

// Release frees the accumulators. Safe to call twice and on nil.
func (a *GradAccumulator) Release() {
	if a == nil || a.released {
		return
	}
	a.released = true
	for _, t := range a.acc {
		t.Release()
	}
}

// Close is Release as an io.Closer.
func (a *GradAccumulator) Close() error { a.Release(); return nil }

// accKernel is the accumulation kernel for sources of dtype d.
func accKernel(dev *vk.Device, d dtype.DType) (*vk.Kernel, error) {
	return dev.ShaderKernel(shaders.GradAccKey{D: d}, wg)
}

// accumulate records acc(f32) += alpha·src over src's elements with k,
// accKernel(src's dtype).
func accumulate(dev *vk.Device, rec *vk.Recorder, k *vk.Kernel, acc, src *vk.Tensor, alpha float32) error {
	p := shaders.GradAccPush{Count: uint32(src.Numel()), Alpha: alpha}
	return rec.Dispatch(k, [3]uint32{gridFor(dev, src.Numel()), 1, 1}, vk.PushBytes(&p), acc.Binding(), src.Binding())
}
