package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/finetune"
	"github.com/vklora/vklora/hf"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/optim"
	"github.com/vklora/vklora/peft"
	"github.com/vklora/vklora/vk"
)

// fitConfig is a parsed command line: everything train needs.
type fitConfig struct {
	model       string // checkpoint directory
	preset      string // the -make-model preset, "" for a user's checkpoint
	layers      int    // the first N decoder layers
	r           int
	alpha       float64
	dropout     float64
	targets     []string
	initAdapter string // start from this PEFT adapter instead
	teacherRank int
	teacherStd  float64 // σ of the teacher's delta outputs
	lr          float64
	warmup      int
	minLR       float64 // the cosine schedule's floor, a fraction of lr
	weightDecay float64
	maxGradNorm float64
	steps       int
	tokens      int // M, rows of every step's inputs
	pool        int
	dtype       dtype.DType // 0: the checkpoint's
	seed        uint64
	out         string // the adapter directory
	plot        string // the loss curve PNG
	dump        string // inputs and outputs for scripts/gpu/lorafit_peft.py, or ""
	profile     bool   // -profile: the last step's per-dispatch GPU times
	bufferCache int64  // vk.Options.BufferCacheBytes
}

// result is what a run measured.
type result struct {
	Device      string
	DType       dtype.DType
	Layers      []int
	Params      int // trainable elements
	Losses      []float64
	Seconds     float64 // the whole loop
	TimedSteps  int     // the steps StepsPerSec is measured over (after warm-up)
	StepsPerSec float64
	// Medians over the timed steps, ms: the whole step (wall), recording
	// it on the host, and the GPU time of its commands (timestamps; 0 on a
	// device without them). Wall minus GPU is what the host and the
	// driver add (allocations, recording, submit and wait).
	WallMs, RecordMs, GPUMs float64
	// The first step's wall time, and the kernels the run built and the
	// driver's time compiling them: what a user waits for before the loop
	// reaches its rate.
	FirstStepSec, BuildSec float64
	KernelsBuilt           int
	// PrepareSec is the wall time of building the step's kernels in
	// parallel before the first step (trainer.prepare).
	PrepareSec float64
	// Profile is the last step's dispatches with their GPU times (-profile).
	Profile []vk.DispatchTime
}

// stepTimes is one step's time split.
type stepTimes struct{ wall, record, gpu time.Duration }

// warmSteps are left out of the rate: the first steps build pipelines and
// grow the driver's pools.
func warmSteps(steps int) int { return min(3, steps/3) }

// trainer is one run's state on the device.
type trainer struct {
	eng      *lora.Engine
	m        *finetune.Model
	teachers []*teacher
	pool     *inputPool
	loss     *lossOp
	opt      *optim.AdamW
}

func (tr *trainer) release() {
	tr.opt.Release()
	tr.loss.release()
	tr.pool.release()
	for _, t := range tr.teachers {
		t.release()
	}
	tr.m.Release()
}

// train runs the fine-tune of c on eng, reporting each step to prog, and
// writes the adapter, the loss curve and the dump.
func train(eng *lora.Engine, c *fitConfig, prog *progress) (*result, error) {
	tr, err := newTrainer(eng, c)
	if err != nil {
		return nil, err
	}
	defer tr.release()
	res := &result{Device: eng.Device().Info().Name, DType: tr.m.DType}
	for _, l := range tr.m.Layers {
		res.Layers = append(res.Layers, l.Index)
	}
	for _, p := range tr.m.Params() {
		res.Params += p.Tensor.Numel()
	}
	t0 := time.Now()
	if err := tr.prepare(); err != nil {
		return nil, fmt.Errorf("building the step's kernels: %w", err)
	}
	res.PrepareSec = time.Since(t0).Seconds()
	rec, err := eng.Device().NewRecorder()
	if err != nil {
		return nil, err
	}
	defer rec.Release()
	prog.begin(c.steps)
	start := time.Now()
	var warmAt time.Time
	var timed []stepTimes
	for t := 0; t < c.steps; t++ {
		if t == warmSteps(c.steps) {
			warmAt = time.Now()
		}
		// The last step is profiled: its timestamps serialize its
		// dispatches, which moves one step of the median at most.
		last := t == c.steps-1
		rec.SetProfile(c.profile && last)
		loss, st, err := tr.step(rec, t)
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", t, err)
		}
		if c.profile && last {
			res.Profile = rec.Profile()
		}
		if t == 0 {
			res.FirstStepSec = st.wall.Seconds()
		}
		if t >= warmSteps(c.steps) {
			timed = append(timed, st)
		}
		res.Losses = append(res.Losses, loss)
		prog.step(t, loss)
	}
	res.WallMs = medianMs(timed, func(s stepTimes) time.Duration { return s.wall })
	res.RecordMs = medianMs(timed, func(s stepTimes) time.Duration { return s.record })
	res.GPUMs = medianMs(timed, func(s stepTimes) time.Duration { return s.gpu })
	b := eng.Device().KernelBuilds()
	res.KernelsBuilt, res.BuildSec = b.Kernels, b.Time.Seconds()
	prog.end()
	res.Seconds = time.Since(start).Seconds()
	if res.TimedSteps = c.steps - warmSteps(c.steps); res.TimedSteps > 0 {
		res.StepsPerSec = float64(res.TimedSteps) / time.Since(warmAt).Seconds()
	}
	if err := tr.m.Save(c.out); err != nil {
		return nil, err
	}
	if c.dump != "" {
		if err := tr.dump(rec, c.dump, c.seed); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func newTrainer(eng *lora.Engine, c *fitConfig) (tr *trainer, err error) {
	ck, err := hf.Open(c.model)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	cfg := ck.Config()
	if c.layers > cfg.NumHiddenLayers {
		return nil, fmt.Errorf("-layers %d: %s has %d decoder layers", c.layers, c.model, cfg.NumHiddenLayers)
	}
	o := finetune.Options{DType: c.dtype, Seed: c.seed, AdapterDir: c.initAdapter}
	for i := 0; i < c.layers; i++ {
		o.Layers = append(o.Layers, i)
	}
	if c.initAdapter == "" {
		pc := peft.DefaultConfig()
		pc.R, pc.LoRAAlpha, pc.LoRADropout = c.r, c.alpha, c.dropout
		pc.TargetModules = &peft.ModuleSet{Names: c.targets}
		pc.TaskType = "CAUSAL_LM"
		o.Config = &pc
	}
	tr = &trainer{eng: eng}
	defer func() {
		if err != nil {
			tr.release()
		}
	}()
	if tr.m, err = finetune.Load(eng, ck, o); err != nil {
		return tr, err
	}
	rng := rand.New(rand.NewPCG(c.seed, 0x7465616368)) // "teach"
	var widths []int
	for _, l := range tr.m.Layers {
		t, err := newTeacher(eng, l, c.teacherRank, c.teacherStd, rng)
		if err != nil {
			return tr, err
		}
		tr.teachers = append(tr.teachers, t)
		widths = append(widths, outWidth(l.QKV.Q), outWidth(l.QKV.K), outWidth(l.QKV.V), cfg.HiddenSize, cfg.HiddenSize)
	}
	qw := cfg.NumAttentionHeads * cfg.HeadDim
	if tr.pool, err = newInputPool(eng.Device(), tr.m.DType, c.tokens, cfg.HiddenSize, qw, c.pool, c.seed); err != nil {
		return tr, err
	}
	if tr.loss, err = newLossOp(eng, c.tokens, widths); err != nil {
		return tr, err
	}
	var sched optim.Schedule = optim.LinearWarmupCosine(c.warmup, c.steps, c.minLR)
	tr.opt, err = optim.NewAdamW(eng.Device(), tr.m.Params(), optim.AdamWConfig{
		LR: c.lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: c.weightDecay,
		MaxGradNorm: c.maxGradNorm, Schedule: sched})
	return tr, err
}

// outWidth is a projection's output width.
func outWidth(p *lora.Projection) int {
	if p.W.Dense != nil {
		return p.W.Dense.Dim(0)
	}
	return p.W.NF4.Out
}

// step records and submits one training step on step's batch and returns
// its loss (before the update).
func (tr *trainer) step(rec *vk.Recorder, t int) (float64, stepTimes, error) {
	start := time.Now()
	loss, stamps, submitted, err := tr.record(rec, t)
	if err != nil {
		return 0, stepTimes{}, err
	}
	st := stepTimes{record: submitted.Sub(start), wall: time.Since(start)}
	if stamps[1] > stamps[0] {
		if st.gpu, err = rec.Elapsed(stamps[0], stamps[1]); err != nil {
			return 0, stepTimes{}, err
		}
	}
	return loss, st, nil
}

// medianMs is the median of the durations f picks from ts, in ms (0 for none).
func medianMs(ts []stepTimes, f func(stepTimes) time.Duration) float64 {
	if len(ts) == 0 {
		return 0
	}
	ds := make([]time.Duration, len(ts))
	for i, t := range ts {
		ds[i] = f(t)
	}
	slices.Sort(ds)
	return float64(ds[len(ds)/2]) / float64(time.Millisecond)
}

// record records step t and submits it: the loss, the step's first and
// last timestamps (both 0 on a device without timestamps) and when the
// recording was done.
func (tr *trainer) record(rec *vk.Recorder, t int) (loss float64, stamps [2]int, submitted time.Time, err error) {
	fail := func(err error) (float64, [2]int, time.Time, error) { return 0, [2]int{}, time.Time{}, err }
	timing := tr.eng.Device().Caps().TimestampValidBits > 0
	if timing {
		if stamps[0], err = rec.Timestamp(); err != nil {
			return fail(err)
		}
	}
	b, err := tr.pool.get(t)
	if err != nil {
		return fail(err)
	}
	grads, err := tr.recordGrads(rec, b)
	if err != nil {
		return fail(err)
	}
	if err := tr.opt.Step(rec, grads); err != nil {
		return fail(err)
	}
	if timing {
		if stamps[1], err = rec.Timestamp(); err != nil {
			return fail(err)
		}
	}
	submitted = time.Now()
	if err := rec.Submit(); err != nil {
		return fail(err)
	}
	loss, err = tr.loss.value()
	return loss, stamps, submitted, err
}

// recordGrads records the forward of the teacher and the student on b,
// the loss and the student's backward, and returns the trainable
// parameters' gradients (held by rec).
func (tr *trainer) recordGrads(rec *vk.Recorder, b batch) ([]*vk.Tensor, error) {
	fw, err := tr.forward(rec, b)
	if err != nil {
		return nil, err
	}
	rec.Barrier()
	if err := tr.loss.record(rec, fw.ys, fw.ts); err != nil {
		return nil, err
	}
	gs := make([]finetune.LayerGrads, len(tr.m.Layers))
	for i, l := range tr.m.Layers {
		g := &gs[i]
		rec.Hold(g)
		y := fw.ys[5*i:]
		dx, qkv, err := l.QKV.Backward(rec, fw.saved[i].qkv, y[0], y[1], y[2])
		g.QKV = qkv
		if err != nil {
			return nil, err
		}
		rec.Hold(dx)
		dx, og, err := l.O.Backward(rec, fw.saved[i].o, y[3])
		g.O = og
		if err != nil {
			return nil, err
		}
		rec.Hold(dx)
		dx, mg, err := l.MLP.Backward(rec, fw.saved[i].mlp, y[4])
		g.MLP = mg
		if err != nil {
			return nil, err
		}
		rec.Hold(dx)
	}
	return tr.m.Grads(gs)
}

// prepare builds a step's kernels in parallel before the first step
// (vk.Device.Prepare): the forward, the loss and the backward, recorded dry
// on a batch of unset inputs. Some drivers take tens of seconds for one
// large matmul kernel, so a cold first step would otherwise wait for the
// sum of them. The optimizer's kernels are left to the first step (they
// are small, and its Step advances its schedule), and the dropout
// generators' offsets are put back, so the run is the one it would be
// without this.
func (tr *trainer) prepare() error {
	b, err := tr.pool.blank()
	if err != nil {
		return err
	}
	defer b.release()
	offsets := map[*lora.Dropout]uint64{}
	for _, l := range tr.m.Layers {
		for _, p := range l.Projections() {
			if p != nil && p.Dropout != nil {
				offsets[p.Dropout] = p.Dropout.Offset
			}
		}
	}
	defer func() {
		for d, off := range offsets {
			d.Offset = off
		}
	}()
	return tr.eng.Device().Prepare(func(rec *vk.Recorder) error {
		_, err := tr.recordGrads(rec, b)
		return err
	})
}

// saved is one layer's forward contexts.
type saved struct {
	qkv *lora.QKVSaved
	o   *lora.OSaved
	mlp *lora.MLPSaved
}

// forwardOut is a step's outputs: per layer q, k, v, o and the MLP's, of
// the student (ys) and the teacher (ts), and the student's contexts.
type forwardOut struct {
	ys, ts []*vk.Tensor
	saved  []saved
}

// forward records the teacher's and the student's forward of every layer
// on b; every tensor it makes is held by rec.
func (tr *trainer) forward(rec *vk.Recorder, b batch) (*forwardOut, error) {
	fw := &forwardOut{}
	for i, l := range tr.m.Layers {
		te := tr.teachers[i]
		ts, _, err := forwardLayer(rec, te.qkv, te.o, te.mlp, b)
		if err != nil {
			return nil, err
		}
		ys, s, err := forwardLayer(rec, l.QKV, l.O, l.MLP, b)
		if err != nil {
			return nil, err
		}
		fw.ys = append(fw.ys, ys[:]...)
		fw.ts = append(fw.ts, ts[:]...)
		fw.saved = append(fw.saved, s)
	}
	return fw, nil
}

// forwardLayer records one layer's QKV and MLP on b.x and O on b.z: the
// outputs q, k, v, o and the MLP's, and the saved contexts, all held by
// rec.
func forwardLayer(rec *vk.Recorder, qkv *lora.QKV, o *lora.O, mlp *lora.MLP, b batch) (ys [5]*vk.Tensor, s saved, err error) {
	hold := func(rs ...vk.Releaser) {
		for _, r := range rs {
			rec.Hold(r)
		}
	}
	if ys[0], ys[1], ys[2], s.qkv, err = qkv.Forward(rec, b.x); err != nil {
		return ys, s, err
	}
	hold(ys[0], ys[1], ys[2], s.qkv)
	if ys[3], s.o, err = o.Forward(rec, b.z); err != nil {
		return ys, s, err
	}
	hold(ys[3], s.o)
	if ys[4], s.mlp, err = mlp.Forward(rec, b.x); err != nil {
		return ys, s, err
	}
	hold(ys[4], s.mlp)
	return ys, s, nil
}
