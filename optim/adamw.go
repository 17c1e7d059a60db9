package optim

import (
	"fmt"
	"math"
	"math/big"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
)

// Param is one parameter the optimizer updates: a device tensor (f32, f16 or
// bf16, any shape) and its name, which keys its state in SaveState and
// LoadState. Names are unique and non-empty.
type Param struct {
	Name   string
	Tensor *vk.Tensor
}

// wg is the workgroup size of every optimizer kernel (a power of two, for
// the reductions of sumsq.comp).
const wg = 256

// Grid caps, variables so that tests can shrink them and run the kernels'
// grid-stride loops on small tensors. updateGrid bounds the workgroups of
// the update and accumulate dispatches (the shader loops over the rest);
// normGrid bounds the workgroups, and so the partial sums, of one
// gradient's sum of squares. Both only have to fill the device.
var (
	updateGrid = 1024
	normGrid   = 64
)

// maxElems keeps every index of the kernels (an element index plus the
// grid's stride) inside 32 bits.
const maxElems = 1 << 31

// clip buffer layout (sumsq.comp's final pass): Σg², ‖g‖, coef, 0.
const clipWords = 4

// AdamW is torch.optim.AdamW on the device, for a fixed list of parameters:
// fp32 moments, an fp32 master copy of each 16-bit parameter, optional
// clipping by the global gradient norm, a learning-rate schedule. See the
// package documentation for the exact arithmetic.
//
// An AdamW is for one goroutine at a time. Its device memory is freed by
// Release; the parameters stay the caller's.
type AdamW struct {
	dev      *vk.Device
	cfg      AdamWConfig
	ps       []*paramState
	owner    map[*vk.Buffer]bool // buffers of the parameters and the optimizer's state
	clip     *vk.Tensor          // f32[4]: Σg², ‖g‖, coef, 0
	partials *vk.Tensor          // f32[nPartials]: sums of squares per workgroup; nil without a norm
	step     int                 // steps recorded
	normStep int                 // the step whose norm clip holds (0: none)
	lastLR   float64
	released bool
}

// paramState is one parameter's device state.
type paramState struct {
	name         string
	p            *vk.Tensor
	m, v, master *vk.Tensor // f32; master is nil for an f32 parameter
	partBase     int        // first partial sum of its gradient
	partCount    int        // partial sums (workgroups) of its gradient
}

// NewAdamW makes an AdamW over params with config cfg (see
// DefaultAdamWConfig). The moments start at zero, the master copies of
// 16-bit parameters at the parameters' values; NewAdamW submits that
// initialisation itself and returns when it is done, so the parameters must
// hold their initial values (no unsubmitted recording may write them).
// Argument errors wrap ErrBadInput.
func NewAdamW(dev *vk.Device, params []Param, cfg AdamWConfig) (_ *AdamW, err error) {
	var o *AdamW // released if anything fails once it exists
	defer func() {
		recoverTo(&err, "NewAdamW", recover())
		if err != nil {
			o.Release()
		}
	}()
	if dev == nil || dev.Released() {
		return nil, fmt.Errorf("optim: NewAdamW: device is nil or released: %w", ErrBadInput)
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Schedule == nil {
		cfg.Schedule = Constant()
	}
	if err := checkParams("NewAdamW", params); err != nil {
		return nil, err
	}
	o = &AdamW{dev: dev, cfg: cfg, owner: map[*vk.Buffer]bool{}}
	half := false
	nPart := 0
	for _, p := range params {
		t := p.Tensor
		s := &paramState{name: p.Name, p: t}
		o.ps = append(o.ps, s)
		o.owner[t.Buffer()] = true
		if s.m, err = dev.NewTensor(dtype.F32, t.Shape()...); err != nil {
			return nil, fmt.Errorf("optim: NewAdamW: exp_avg of %q %s: %w", p.Name, t, err)
		}
		if s.v, err = dev.NewTensor(dtype.F32, t.Shape()...); err != nil {
			return nil, fmt.Errorf("optim: NewAdamW: exp_avg_sq of %q %s: %w", p.Name, t, err)
		}
		o.owner[s.m.Buffer()], o.owner[s.v.Buffer()] = true, true
		if t.DType() != dtype.F32 {
			half = true
			if s.master, err = dev.NewTensor(dtype.F32, t.Shape()...); err != nil {
				return nil, fmt.Errorf("optim: NewAdamW: master copy of %q %s: %w", p.Name, t, err)
			}
			o.owner[s.master.Buffer()] = true
		}
		s.partBase, s.partCount = nPart, normGroups(t.Numel())
		nPart += s.partCount
	}
	if half && !dev.Caps().Storage16 {
		return nil, fmt.Errorf("optim: NewAdamW: device %s lacks 16-bit storage buffers, needed for f16/bf16 parameters: %w",
			dev.Info().Name, vk.ErrUnsupported)
	}
	if o.clip, err = dev.NewTensor(dtype.F32, clipWords); err != nil {
		return nil, fmt.Errorf("optim: NewAdamW: clip buffer: %w", err)
	}
	o.owner[o.clip.Buffer()] = true
	if o.tracksNorm() {
		if o.partials, err = dev.NewTensor(dtype.F32, nPart); err != nil {
			return nil, fmt.Errorf("optim: NewAdamW: %d partial norms: %w", nPart, err)
		}
		o.owner[o.partials.Buffer()] = true
	}
	// Every kernel a step may use, found now: a missing one is an error
	// here, not halfway through a recording.
	for _, s := range o.ps {
		if _, err := o.kernels(s, s.p.DType()); err != nil {
			return nil, err
		}
	}
	if o.tracksNorm() {
		if _, err := dev.ShaderKernel(shaders.SumSqKey{D: dtype.F32, Final: true}, wg); err != nil {
			return nil, fmt.Errorf("optim: NewAdamW: %w", err)
		}
	}
	if err := o.initState(); err != nil {
		return nil, err
	}
	return o, nil
}

// checkParams validates a parameter list: non-empty, unique non-empty
// names, live float tensors within the kernels' index range, no two
// sharing memory.
func checkParams(fn string, params []Param) error {
	if len(params) == 0 {
		return fmt.Errorf("optim: %s: the parameter list is empty: %w", fn, ErrBadInput)
	}
	names := map[string]bool{}
	byBuf := map[*vk.Buffer][]int{}
	for i, p := range params {
		t := p.Tensor
		switch {
		case p.Name == "":
			return fmt.Errorf("optim: %s: param %d %s has no name: %w", fn, i, t, ErrBadInput)
		case names[p.Name]:
			return fmt.Errorf("optim: %s: param name %q is used twice: %w", fn, p.Name, ErrBadInput)
		case t == nil || t.Released():
			return fmt.Errorf("optim: %s: param %q is nil or released: %w", fn, p.Name, ErrBadInput)
		case !t.DType().IsFloat():
			return fmt.Errorf("optim: %s: param %q %s must be f32, f16 or bf16: %w", fn, p.Name, t, ErrBadInput)
		case t.Numel() > maxElems:
			return fmt.Errorf("optim: %s: param %q %s has more than 2^31 elements: %w", fn, p.Name, t, ErrBadInput)
		}
		names[p.Name] = true
		for _, j := range byBuf[t.Buffer()] {
			if vk.Overlaps(t, params[j].Tensor) {
				return fmt.Errorf("optim: %s: params %q %s and %q %s share memory: %w",
					fn, params[j].Name, params[j].Tensor, p.Name, t, ErrBadInput)
			}
		}
		byBuf[t.Buffer()] = append(byBuf[t.Buffer()], i)
	}
	return nil
}

// normGroups is the number of workgroups, and partial sums, of the sum of
// squares of a gradient of n elements.
func normGroups(n int) int { return max(1, min(ceilDiv(n, wg), normGrid)) }

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// gridX is the grid of a grid-stride dispatch over n elements.
func (o *AdamW) gridX(n int) uint32 { return gridFor(o.dev, n) }

func gridFor(dev *vk.Device, n int) uint32 {
	return uint32(max(1, min(ceilDiv(n, wg), updateGrid, int(dev.Caps().MaxWorkgroupCount[0]))))
}

func (o *AdamW) tracksNorm() bool { return o.cfg.MaxGradNorm > 0 || o.cfg.TrackGradNorm }

// initState zeroes the moments and the clip buffer and widens each 16-bit
// parameter into its master copy, in one submission of its own.
func (o *AdamW) initState() error {
	rec, err := o.dev.NewRecorder()
	if err != nil {
		return fmt.Errorf("optim: NewAdamW: %w", err)
	}
	defer rec.Release()
	if err := rec.Fill(o.clip.Binding(), 0); err != nil {
		return fmt.Errorf("optim: NewAdamW: %w", err)
	}
	for _, s := range o.ps {
		for _, t := range []*vk.Tensor{s.m, s.v, s.master} {
			if t != nil {
				if err := rec.Fill(t.Binding(), 0); err != nil {
					return fmt.Errorf("optim: NewAdamW: %w", err)
				}
			}
		}
	}
	rec.Barrier()
	for _, s := range o.ps {
		if s.master == nil {
			continue
		}
		k, err := accKernel(o.dev, s.p.DType())
		if err != nil {
			return fmt.Errorf("optim: NewAdamW: %w", err)
		}
		// 0 + 1·p is p exactly: the master starts as the parameter's value.
		if err := accumulate(o.dev, rec, k, s.master, s.p, 1); err != nil {
			return fmt.Errorf("optim: NewAdamW: master copy of %q: %w", s.name, err)
		}
	}
	if err := rec.Submit(); err != nil {
		return fmt.Errorf("optim: NewAdamW: initialising the state: %w", err)
	}
	return nil
}

// stepKernels are the kernels of one parameter's step.
type stepKernels struct{ update, sumsq *vk.Kernel }

// kernels returns the update (and norm) kernels of s for gradients of gd.
func (o *AdamW) kernels(s *paramState, gd dtype.DType) (stepKernels, error) {
	var k stepKernels
	pd := s.p.DType()
	key := shaders.AdamWKey{P: pd, G32: pd != dtype.F32 && gd == dtype.F32}
	var err error
	if k.update, err = o.dev.ShaderKernel(key, wg); err != nil {
		return k, fmt.Errorf("optim: %w", err)
	}
	if o.tracksNorm() {
		if k.sumsq, err = o.dev.ShaderKernel(shaders.SumSqKey{D: gd}, wg); err != nil {
			return k, fmt.Errorf("optim: %w", err)
		}
	}
	return k, nil
}

// Step records one optimizer step on rec: grads[i] is the gradient of
// parameter i, of its shape and of its dtype or f32 (an f32 accumulator,
// see GradAccumulator); grads are read, never written (the clipping is
// applied inside the update). The step records a barrier before its first
// dispatch and after its last, so gradients computed earlier in the
// recording are seen and later dispatches see the new parameters. The
// parameters hold the new values after rec.Submit.
//
// The step counter advances when the step is recorded, and the schedule is
// evaluated then: a recording that is never submitted (or whose Submit
// fails) leaves the host's count one ahead of the device state; reload a
// saved state in that case. Argument errors wrap ErrBadInput and are found
// before anything is recorded (but a gradient of another device than the
// optimizer's is only found by the recorder, whose sticky error Submit
// returns).
func (o *AdamW) Step(rec *vk.Recorder, grads []*vk.Tensor) (err error) {
	defer func() { recoverTo(&err, "Step", recover()) }()
	if err := o.alive("Step"); err != nil {
		return err
	}
	if rec == nil {
		return fmt.Errorf("optim: Step: recorder is nil: %w", ErrBadInput)
	}
	if rec.Device() != o.dev {
		return fmt.Errorf("optim: Step: the recorder belongs to another device: %w", ErrBadInput)
	}
	if err := o.checkGrads(grads); err != nil {
		return err
	}
	t := o.step + 1
	lr, err := o.rate(o.step)
	if err != nil {
		return err
	}
	ks := make([]stepKernels, len(o.ps))
	for i, s := range o.ps {
		if ks[i], err = o.kernels(s, grads[i].DType()); err != nil {
			return err
		}
	}
	var final *vk.Kernel
	if o.tracksNorm() {
		if final, err = o.dev.ShaderKernel(shaders.SumSqKey{D: dtype.F32, Final: true}, wg); err != nil {
			return fmt.Errorf("optim: %w", err)
		}
	}
	push := stepScalars(o.cfg, lr, t)
	rec.Barrier()
	if o.tracksNorm() {
		if err := o.recordNorm(rec, grads, ks, final); err != nil {
			return err
		}
		rec.Barrier()
		push.Clip = b32(o.cfg.MaxGradNorm > 0)
	}
	for i, s := range o.ps {
		push.Count = uint32(s.p.Numel())
		bufs := []vk.Binding{s.p.Binding(), grads[i].Binding(), s.m.Binding(), s.v.Binding(), o.clip.Binding()}
		if s.master != nil {
			bufs = append(bufs, s.master.Binding())
		}
		if err := rec.Dispatch(ks[i].update, [3]uint32{o.gridX(s.p.Numel()), 1, 1}, vk.PushBytes(&push), bufs...); err != nil {
			return fmt.Errorf("optim: Step: update of %q: %w", s.name, err)
		}
	}
	rec.Barrier()
	o.step, o.lastLR = t, lr
	if o.tracksNorm() {
		o.normStep = t
	}
	return nil
}

// recordNorm records the sums of squares of every gradient into the
// partials, a barrier, and their reduction into the clip buffer.
func (o *AdamW) recordNorm(rec *vk.Recorder, grads []*vk.Tensor, ks []stepKernels, final *vk.Kernel) error {
	for i, s := range o.ps {
		p := shaders.SumSqPush{Count: uint32(s.p.Numel()), Base: uint32(s.partBase)}
		if err := rec.Dispatch(ks[i].sumsq, [3]uint32{uint32(s.partCount), 1, 1}, vk.PushBytes(&p),
			grads[i].Binding(), o.partials.Binding()); err != nil {
			return fmt.Errorf("optim: Step: norm of the gradient of %q: %w", s.name, err)
		}
	}
	rec.Barrier()
	p := shaders.SumSqPush{Count: uint32(o.partials.Numel()), Clip: b32(o.cfg.MaxGradNorm > 0), MaxNorm: float32(o.cfg.MaxGradNorm)}
	if err := rec.Dispatch(final, [3]uint32{1, 1, 1}, vk.PushBytes(&p), o.partials.Binding(), o.clip.Binding()); err != nil {
		return fmt.Errorf("optim: Step: global gradient norm: %w", err)
	}
	return nil
}

// checkGrads validates a step's gradients against the parameters.
func (o *AdamW) checkGrads(grads []*vk.Tensor) error {
	if len(grads) != len(o.ps) {
		return fmt.Errorf("optim: Step: %d gradients for %d params: %w", len(grads), len(o.ps), ErrBadInput)
	}
	for i, g := range grads {
		if err := o.checkGrad(o.ps[i], g); err != nil {
			return err
		}
	}
	return nil
}

func (o *AdamW) checkGrad(s *paramState, g *vk.Tensor) error {
	p := s.p
	switch {
	case p.Released():
		return fmt.Errorf("optim: Step: param %q was released: %w", s.name, ErrBadInput)
	case g == nil || g.Released():
		return fmt.Errorf("optim: Step: gradient of %q %s is nil or released: %w", s.name, p, ErrBadInput)
	case g.DType() != p.DType() && g.DType() != dtype.F32:
		return fmt.Errorf("optim: Step: gradient %s of %q %s must be %s or f32: %w", g, s.name, p, p.DType(), ErrBadInput)
	case !sameShape(g.Shape(), p.Shape()):
		return fmt.Errorf("optim: Step: gradient %s of %q %s must have the param's shape: %w", g, s.name, p, ErrBadInput)
	case o.owner[g.Buffer()]:
		// The update writes the parameter and its state while it reads the
		// gradient: a gradient in any of that memory would race.
		for _, q := range o.ps {
			for _, t := range []*vk.Tensor{q.p, q.m, q.v, q.master} {
				if t != nil && vk.Overlaps(g, t) {
					return fmt.Errorf("optim: Step: gradient %s of %q shares memory with param %q or its state: %w", g, s.name, q.name, ErrBadInput)
				}
			}
		}
		if vk.Overlaps(g, o.clip) || (o.partials != nil && vk.Overlaps(g, o.partials)) {
			return fmt.Errorf("optim: Step: gradient %s of %q shares memory with the optimizer's norm buffers: %w", g, s.name, ErrBadInput)
		}
	}
	return nil
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// rate is the learning rate of the step after k steps: LR·Schedule(k).
func (o *AdamW) rate(k int) (lr float64, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("optim: Step: the schedule panicked at step %d: %v: %w", k+1, r, ErrBadInput)
		}
	}()
	mult := o.cfg.Schedule(k)
	if math.IsNaN(mult) || math.IsInf(mult, 0) || mult < 0 {
		return 0, fmt.Errorf("optim: Step: the schedule gave %v at step %d (after %d steps); want a finite value ≥ 0: %w", mult, k+1, k, ErrBadInput)
	}
	lr = o.cfg.LR * mult
	if math.IsInf(lr, 0) {
		return 0, fmt.Errorf("optim: Step: learning rate LR·schedule = %v·%v overflows at step %d: %w", o.cfg.LR, mult, k+1, ErrBadInput)
	}
	return lr, nil
}

// stepScalars are the push constants of step t (1-based) at rate lr,
// computed in float64 as torch computes them in Python, each rounded once
// to f32 as torch rounds a Python scalar for an f32 tensor op.
func stepScalars(c AdamWConfig, lr float64, t int) shaders.AdamWPush {
	bc1 := 1 - powRN(c.Beta1, t)
	bc2 := 1 - powRN(c.Beta2, t)
	stepSize := lr / bc1
	return shaders.AdamWPush{
		Decay:   float32(1 - lr*c.WeightDecay),
		W1:      float32(1 - c.Beta1),
		Beta2:   float32(c.Beta2),
		C2:      float32(1 - c.Beta2),
		NegStep: float32(-stepSize),
		BC2Sqrt: float32(math.Sqrt(bc2)),
		Eps:     float32(c.Eps),
	}
}

// powRN is x^n (n ≥ 1) rounded to the nearest float64, as Python's
// x ** float(n) is (glibc's pow is correctly rounded in practice; Go's
// math.Pow multiplies and may be an ulp off). The power is taken in 256-bit
// arithmetic, whose relative error n·2^-256 cannot change the rounding but
// in cases closer to a tie than any pow implementation resolves.
func powRN(x float64, n int) float64 {
	if x == 0 || n <= 0 {
		return math.Pow(x, float64(n))
	}
	const prec = 256
	r := new(big.Float).SetPrec(prec).SetFloat64(1)
	b := new(big.Float).SetPrec(prec).SetFloat64(x)
	for e := n; e > 0; e >>= 1 {
		if e&1 == 1 {
			r.Mul(r, b)
		}
		if e > 1 {
			b.Mul(b, b)
		}
	}
	f, _ := r.Float64()
	return f
}

func b32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// Steps is the number of steps recorded (torch's state["step"]).
func (o *AdamW) Steps() int { return o.step }

// LastLR is the learning rate of the last recorded step (0 before the
// first).
func (o *AdamW) LastLR() float64 { return o.lastLR }

// Config returns the optimizer's config (with the Constant schedule filled
// in when none was given).
func (o *AdamW) Config() AdamWConfig { return o.cfg }

// Params returns the parameters, in order.
func (o *AdamW) Params() []Param {
	ps := make([]Param, len(o.ps))
	for i, s := range o.ps {
		ps[i] = Param{Name: s.name, Tensor: s.p}
	}
	return ps
}

// GradNorm reads the global L2 norm of the last step's gradients (before
// clipping: clip_grad_norm_'s return value), computed on the device in f32.
// It is valid once the recording holding that step has been submitted:
// before, it returns an error wrapping vk.ErrPending. It needs MaxGradNorm
// > 0 or TrackGradNorm, and a step recorded since NewAdamW or the last
// LoadState.
func (o *AdamW) GradNorm() (float32, error) {
	if err := o.alive("GradNorm"); err != nil {
		return 0, err
	}
	if !o.tracksNorm() {
		return 0, fmt.Errorf("optim: GradNorm: no norm is computed (set MaxGradNorm or TrackGradNorm): %w", ErrBadInput)
	}
	if o.normStep == 0 {
		return 0, fmt.Errorf("optim: GradNorm: no step has been recorded yet: %w", ErrBadInput)
	}
	vals, err := o.clip.Float32()
	if err != nil {
		return 0, fmt.Errorf("optim: GradNorm: %w", err)
	}
	return vals[1], nil
}

// alive reports a nil or released optimizer, or a released device.
func (o *AdamW) alive(fn string) error {
	if o == nil || o.released {
		return fmt.Errorf("optim: %s: optimizer is nil or released: %w", fn, vk.ErrReleased)
	}
	if o.dev.Released() {
		return fmt.Errorf("optim: %s: device is released: %w", fn, vk.ErrReleased)
	}
	return nil
}

// Release frees the optimizer's device memory (moments, master copies, norm
// buffers), not the parameters. Safe to call twice and on nil; later calls
// return errors wrapping vk.ErrReleased.
func (o *AdamW) Release() {
	if o == nil || o.released {
		return
	}
	o.released = true
	for _, s := range o.ps {
		s.m.Release()
		s.v.Release()
		s.master.Release()
	}
	o.clip.Release()
	o.partials.Release()
}

// Close is Release as an io.Closer.
func (o *AdamW) Close() error { o.Release(); return nil }

// recoverTo turns a recovered panic r into an error, so that none escapes
// the package. Call it as defer func() { recoverTo(&err, fn, recover()) }().
func recoverTo(err *error, fn string, r any) {
	if r != nil {
		*err = fmt.Errorf("optim: %s: internal error: %v", fn, r)
	}
}
