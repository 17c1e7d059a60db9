package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/internal/profile"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
)

// benchCase is one validated, timed op at one shape and dtype: a row of the
// report. Each op provides a constructor that fills one in: matmulCase in
// matmul.go, layerCase in layers.go (matmul_lora, o, qkv, mlp).
//
// To add an op to `lorabench bench`:
//  1. In a new file (e.g. attn.go), write a constructor returning a benchCase:
//     Op ("attn"), Form (the variant, e.g. the preset "llama3-8b" or
//     "fwd"/"fwdbwd"), M/N/K (the problem dims: for LoRA layers the tokens,
//     hidden and intermediate sizes), FLOPs and Bytes (the matmul count
//     2·M·N·K per product, and the least device-memory traffic; layers.go
//     has the LoRA layers'), Weight and WeightBytes (the base weights'
//     format, see weight.go), Need (what Setup and one step allocate and
//     dispatch, from the shape alone, see fit.go: runCases skips the case
//     when it does not fit the device or the host), Smaller (the flags
//     that shrink it, for the skip's hint) and Setup.
//  2. Setup allocates the inputs on the engine's device (fresh random values
//     from rng, rounded to the dtype so the float64 reference sees what the
//     GPU stores; base weights through uploadWeight, which quantizes NF4
//     and returns the values the reference must use) and returns a
//     benchRun: Record records ONE run of the op into rec without
//     submitting (timeGPU repeats it), Validate compares the outputs of the
//     run last submitted with the ref package, and Release frees every
//     tensor (the device errors on leaks).
//  3. Add a benchOp entry to benchOps below whose Cases returns the quick
//     (lavapipe, well under a minute) or full sweep, e.g. over the presets
//     llama3-8b, gemma-2b and qwen2.5-0.5b. `lorabench <op>` subcommands
//     are optional: runCase and the reporter are shared.
type benchCase struct {
	Op     string      // "matmul"
	Form   string      // variant: operand layout, preset, fwd/bwd …
	DType  dtype.DType // storage dtype of inputs and outputs
	M, N   int         // problem dims reported in the row
	K      int
	FLOPs  float64      // floating-point operations of one run
	Bytes  float64      // minimum bytes one run reads and writes in device memory
	Weight weightFormat // of the base weights (matmul: of B)
	// WeightBytes is the device memory of the base weights, held by the
	// case (so not in the step's peak).
	WeightBytes float64
	Preset      string     // matmul at a layer shape: the preset, "quick" or "custom"
	Layer       *layerInfo // shape and pass of a LoRA layer case (nil for matmul)
	// Need is what Setup and one step will allocate and dispatch, from the
	// shape alone: runCases checks it against the device's and the host's
	// limits before Setup runs (fit.go).
	Need needs
	// Smaller are the command-line changes that make the case smaller, in
	// the order a hint tries them when it does not fit (-m, -weight nf4, …).
	Smaller []resize
	Setup   func(eng *lora.Engine, rng *rand.Rand) (*benchRun, error)
}

// benchRun is a case made ready on a device.
type benchRun struct {
	Record func(rec *vk.Recorder) error
	// Prepare records, for vk.Device.Prepare, every step whose kernels the
	// run needs (Record's and the validation's); nil means Record's.
	Prepare  func(rec *vk.Recorder) error
	Validate func() (relErr, tol float64, detail string, err error)
	Release  func()
	// SetEngine makes Record and Validate use eng from now on (the run's
	// tensors belong to the device, not to an engine): -sweep times one
	// set-up on several engines. Nil when the run has no engine to swap.
	SetEngine func(eng *lora.Engine)
}

func (c benchCase) String() string {
	return fmt.Sprintf("%s %s %s %dx%dx%d", c.label(), c.DType, c.Form, c.M, c.N, c.K)
}

// label is the op as the table shows it: "mlp", or "mlp/nf4" on NF4 weights.
func (c benchCase) label() string { return c.Op + c.Weight.suffix() }

// benchOp is one op of the `bench` suite.
type benchOp struct {
	Name  string
	Cases func(sel *selection) []benchCase
}

// selection is what the flags of `bench` chose.
type selection struct {
	quick   bool
	shapes  []shape       // of the layer ops
	dtypes  []dtype.DType // of the layer ops
	mmTypes []dtype.DType // of matmul; nil: its own defaults
	// mmShapes: matmul runs the MLP projections of shapes (-preset or a
	// custom shape was given) instead of its cube sweep.
	mmShapes  bool
	weights   []weightFormat
	passes    []string
	valRows   int
	keepSaved bool     // -keep-saved: the MLP runs as mlp_keep_saved
	ext       layerExt // -dropout, -lora-bias, -dora: on every projection of the layer ops
}

// benchOps is the suite `lorabench bench` runs, in order.
var benchOps = []benchOp{
	{Name: "matmul", Cases: matmulSweep},
	{Name: "matmul_lora", Cases: layerSweep("matmul_lora")},
	{Name: "o", Cases: layerSweep("o")},
	{Name: "qkv", Cases: layerSweep("qkv")},
	{Name: "mlp", Cases: layerSweep("mlp")},
}

func benchOpNames() []string {
	var ns []string
	for _, op := range benchOps {
		ns = append(ns, op.Name)
	}
	return ns
}

// layerSweep: the op at every selected shape, dtype and pass (matmul_lora
// has no backward: forward only).
func layerSweep(name string) func(sel *selection) []benchCase {
	return func(sel *selection) []benchCase {
		op := layerOps[name]
		if name == "mlp" && sel.keepSaved {
			op = layerOps["mlp_keep_saved"]
		}
		var cs []benchCase
		for _, s := range sel.shapes {
			for _, d := range sel.dtypes {
				for _, p := range sel.passes {
					if p == passFwdBwd && op.fwdOnly {
						continue
					}
					for _, w := range sel.weights {
						cs = append(cs, layerCaseExt(op, s, d, p, w, sel.valRows, sel.ext))
					}
				}
			}
		}
		return cs
	}
}

// matmulSweep: X·Wᵀ (form nt, the forward projection) in every selected
// weight format. At -preset or a custom shape, for each shape the MLP's
// projections at its M tokens: up (and gate) W [I, H] and down W [H, I];
// otherwise cubes, in the -dtype dtypes when given.
func matmulSweep(sel *selection) []benchCase {
	var cs []benchCase
	if sel.mmShapes {
		for _, s := range sel.shapes {
			for _, d := range sel.dtypes {
				for _, p := range []projDim{{"up", s.I, s.H}, {"down", s.H, s.I}} {
					for _, w := range sel.weights {
						at := func(m int, w weightFormat) benchCase {
							c := matmulCase(m, p.out, p.in, d, "nt", w)
							c.Form, c.Preset = "nt "+s.Name+" "+p.name, s.Name
							return c
						}
						c := at(s.M, w)
						c.Smaller = append([]resize{{"-m", s.M, func(v int) benchCase { return at(v, w) }, nil}},
							nf4Resize(c, func() benchCase { return at(s.M, nf4Default) })...)
						cs = append(cs, c)
					}
				}
			}
		}
		return cs
	}
	sizes, dts := []int{1024, 4096}, []dtype.DType{dtype.F32, dtype.BF16}
	if sel.quick {
		sizes, dts = []int{256, 512}, dtype.Floats
	}
	if sel.mmTypes != nil {
		dts = sel.mmTypes
	}
	for _, s := range sizes {
		for _, d := range dts {
			for _, w := range sel.weights {
				c := matmulCase(s, s, s, d, "nt", w)
				// bench's cubes are fixed: the hint is the matmul command.
				c.Smaller = []resize{{"lorabench matmul -sizes", s, func(v int) benchCase { return matmulCase(v, v, v, d, "nt", w) }, nil}}
				cs = append(cs, c)
			}
		}
	}
	return cs
}

const benchSynopsis = "[-quick] [-op OP,...] [-preset P,... | -m M -hidden H -inter I -q Q -kv KV -r R -act A] [-dtype D,...] [-weight dense,nf4 [-blocksize B] [-double-quant=BOOL]] [-pass fwd|fwdbwd|both] [-keep-saved] [-dropout P] [-lora-bias] [-dora] [-val-rows N] [-reps N] [-warmup N] [-warmup-ms MS] [-seed S] [-device SEL] [-json] [-plot FILE.png|FILE.svg [-plot-metric tflops|ms|peak]] [-profile] [-stats] [-no-peak] [-sweep NAME=V1;V2;...]"

func cmdBench(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", benchSynopsis, stderr)
	quick := fs.Bool("quick", false, "small shapes that finish in about a minute on lavapipe (20 cases): matmul 256³, 512³ in f32, f16, bf16 and the layer ops at M=64, H=96, I=160, Q=96, KV=32, r=8 in f32, bf16")
	ops := fs.String("op", "", "comma-separated ops: "+strings.Join(benchOpNames(), ", ")+" (default all)")
	pre := fs.String("preset", "", "comma-separated presets of the layer ops: "+strings.Join(presetNames(), ", ")+" (default all three without -quick or a custom shape); with -preset or a custom shape, matmul runs the MLP's X·Wᵀ at that shape (up: W [I,H]; down: W [H,I]) instead of cubes")
	m := fs.Int("m", 0, "custom shape: tokens M (with -preset: overrides the presets' M)")
	hidden := fs.Int("hidden", 0, "custom shape: hidden size H")
	inter := fs.Int("inter", 0, "custom shape: MLP intermediate size I")
	q := fs.Int("q", 0, "custom shape: q projection width (default H)")
	kv := fs.Int("kv", 0, "custom shape: k and v projection width (default max(1, H/3))")
	r := fs.Int("r", 0, "LoRA rank (custom shape; with -preset: overrides the presets' r)")
	act := fs.String("act", "", "custom shape: MLP activation swiglu, geglu or geglu_tanh (default swiglu)")
	dts := fs.String("dtype", "", "comma-separated dtypes f32, f16, bf16 (default bf16 for presets, f32,bf16 for -quick and custom shapes; matmul's cubes keep their own unless given, matmul at -preset or a custom shape takes the layer ops')")
	pass := fs.String("pass", "both", "layer ops: fwd (forward), fwdbwd (forward+backward) or both")
	valRows := fs.Int("val-rows", 64, "layer ops are validated by running the complete problem again on the first min(M, val-rows) rows of X (and of the upstream gradients) against the float64 reference")
	keepSaved := fs.Bool("keep-saved", false, "run the MLP with KeepSaved (lora.MLP.KeepSaved: its backward allocates de and dg instead of overwriting the saved e and g, so the context could serve another backward; more memory), reported as mlp_keep_saved")
	dropout := fs.Float64("dropout", 0, "layer ops: LoRA dropout with probability P in [0, 1) on every projection's LoRA input (PEFT lora_dropout, in training: each projection its own mask from the device's Philox generator, fresh every step; validated with the masks regenerated on the host)")
	loraBias := fs.Bool("lora-bias", false, "layer ops: a random lora_B bias on every projection (PEFT lora_bias=True); not with -dora")
	dora := fs.Bool("dora", false, "layer ops: DoRA on every projection (PEFT use_dora=True), the magnitude the row norms of W + s·B·A times a random factor in [0.6, 1.4); not with -lora-bias")
	wf := addWeightFlags(fs)
	o := addRunFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	set := setFlags(fs)
	sel := &selection{quick: *quick, valRows: *valRows, keepSaved: *keepSaved,
		ext: layerExt{Dropout: *dropout, LoRABias: *loraBias, DoRA: *dora}}
	if sel.valRows < 1 {
		return usagef("-val-rows must be ≥ 1 (got %d)", sel.valRows)
	}
	if err := sel.ext.check(); err != nil {
		return err
	}
	weights, err := wf.parse(set)
	if err != nil {
		return err
	}
	sel.weights = weights
	switch *pass {
	case "both":
		sel.passes = []string{passFwd, passFwdBwd}
	case passFwd, passFwdBwd:
		sel.passes = []string{*pass}
	default:
		return usagef("-pass %q: want fwd, fwdbwd or both", *pass)
	}
	var run []benchOp
	if set["op"] {
		for _, name := range splitList(*ops) {
			i := slices.IndexFunc(benchOps, func(op benchOp) bool { return op.Name == name })
			if i < 0 {
				return usagef("-op %q: unknown op (want %s)", name, strings.Join(benchOpNames(), ", "))
			}
			run = append(run, benchOps[i])
		}
	} else {
		run = benchOps
	}
	// The layer shapes: presets, a custom shape or the quick shape.
	custom := false
	for _, f := range []string{"hidden", "inter", "q", "kv", "act"} {
		custom = custom || set[f]
	}
	switch {
	case set["preset"]:
		if custom {
			return usagef("-preset and a custom shape (-hidden, -inter, -q, -kv, -act) are alternatives: give one")
		}
		if *quick {
			return usagef("-preset and -quick are alternatives: give one")
		}
		for _, name := range splitList(*pre) {
			i := slices.IndexFunc(presets, func(p shape) bool { return p.Name == name })
			if i < 0 {
				return usagef("-preset %q: unknown preset (want %s)", name, strings.Join(presetNames(), ", "))
			}
			sel.shapes = append(sel.shapes, presets[i])
		}
		sel.mmShapes = true
	case custom || set["m"] || set["r"]:
		s := quickShape
		s.Name = "custom"
		if set["hidden"] {
			s.H, s.Q, s.KV = *hidden, *hidden, max(1, *hidden/3)
		}
		if set["act"] {
			a, err := ref.ParseActivation(*act)
			if err != nil {
				return usagef("-act %q: want swiglu, geglu or geglu_tanh", *act)
			}
			s.Act = a
		}
		for _, f := range []struct {
			name string
			v    int
			dst  *int
		}{{"inter", *inter, &s.I}, {"q", *q, &s.Q}, {"kv", *kv, &s.KV}} {
			if set[f.name] {
				*f.dst = f.v
			}
		}
		sel.shapes = []shape{s}
		sel.mmShapes = custom || set["m"]
	case *quick:
		sel.shapes = []shape{quickShape}
	default:
		sel.shapes = append([]shape(nil), presets...)
	}
	for _, f := range []dimFlag{{"m", *m}, {"hidden", *hidden}, {"inter", *inter}, {"q", *q}, {"kv", *kv}, {"r", *r}} {
		if set[f.name] {
			if err := checkDims(f); err != nil {
				return err
			}
		}
	}
	for i := range sel.shapes {
		if set["m"] {
			sel.shapes[i].M = *m
		}
		if set["r"] {
			sel.shapes[i].R = *r
		}
	}
	if set["dtype"] {
		for _, s := range splitList(*dts) {
			d, err := dtype.Parse(s)
			if err != nil || !d.IsFloat() {
				return usagef("-dtype %q: want f32, f16 or bf16", s)
			}
			sel.dtypes = append(sel.dtypes, d)
		}
		sel.mmTypes = sel.dtypes
	} else if set["preset"] || (!*quick && !custom && !set["m"] && !set["r"]) {
		sel.dtypes = []dtype.DType{dtype.BF16}
	} else {
		sel.dtypes = []dtype.DType{dtype.F32, dtype.BF16}
	}
	var cases []benchCase
	for _, op := range run {
		cases = append(cases, op.Cases(sel)...)
	}
	if len(cases) == 0 {
		return usagef("nothing to run: matmul_lora has no backward (-pass fwdbwd)")
	}
	return runSelected(cases, o, stdout, stderr)
}

// splitList splits a comma-separated flag value, trimming spaces and
// dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// runFlags are the flags every timing command shares.
type runFlags struct {
	reps, warmup int
	warmupMs     int
	device       string
	json         bool
	seed         uint64
	plot         string // chart file, "" for none
	plotMetric   string
	profile      bool      // -profile: per-dispatch times of one step
	noPeak       bool      // -no-peak: no frac_peak (peak.go)
	stats        bool      // -stats: the driver's compile statistics of every kernel that ran (kstats.go)
	sweepFlag    string    // -sweep NAME=V1;V2;... (sweep.go)
	sweep        sweep     // sweepFlag parsed by check
	profileOut   io.Writer // where runCases sends them (stderr)
}

func addRunFlags(fs *flag.FlagSet) *runFlags {
	o := &runFlags{}
	fs.IntVar(&o.reps, "reps", 20, fmt.Sprintf("timed repeats (the median is reported), at most %d", maxReps))
	fs.IntVar(&o.warmup, "warmup", 5, fmt.Sprintf("least untimed warm-up runs, at most %d", maxWarmup))
	fs.IntVar(&o.warmupMs, "warmup-ms", int(defaultWarmGPU/time.Millisecond),
		fmt.Sprintf("least GPU time of the warm-up in ms, so that the GPU's clocks have ramped up; at most %d", maxWarmupMs))
	fs.StringVar(&o.device, "device", "", "device index or name substring (default $VKLORA_DEVICE, else the first discrete GPU)")
	fs.BoolVar(&o.json, "json", false, "one JSON object per result per line on stdout instead of a table (skipped cases and the summary go to stderr)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the random inputs")
	fs.StringVar(&o.plot, "plot", "", "also chart the results into this .png or .svg file: one bar per validated row")
	fs.StringVar(&o.plotMetric, "plot-metric", "tflops", "what -plot charts: tflops, ms or peak (MiB)")
	fs.BoolVar(&o.profile, "profile", false, "after timing, run one step with every dispatch timed and list them on stderr")
	fs.BoolVar(&o.noPeak, "no-peak", false, "no frac_peak column: do not read or measure the device's peak (lorabench peak)")
	fs.BoolVar(&o.stats, "stats", false, "list the driver's compile statistics (registers, spills, ...) of every kernel that ran, on stderr")
	fs.StringVar(&o.sweepFlag, "sweep", "", "`NAME=V1;V2;...`: time every case once per value of the engine switch NAME ("+strings.Join(sweepVars, ", ")+"), set up once, in one process")
	return o
}

func (o *runFlags) warm() warm {
	return warm{Runs: o.warmup, GPU: time.Duration(o.warmupMs) * time.Millisecond}
}

// Upper bounds of the run flags: -reps sizes a slice of times, and
// -warmup-ms becomes a time.Duration; beyond these a run would not end in
// any useful time anyway.
const (
	maxReps     = 1_000_000
	maxWarmup   = 1_000_000
	maxWarmupMs = 3_600_000 // an hour
)

func (o *runFlags) check() error {
	if o.reps < 1 || o.reps > maxReps {
		return usagef("-reps must be in [1, %d] (got %d)", maxReps, o.reps)
	}
	if o.warmup < 0 || o.warmup > maxWarmup {
		return usagef("-warmup must be in [0, %d] (got %d)", maxWarmup, o.warmup)
	}
	if o.warmupMs < 0 || o.warmupMs > maxWarmupMs {
		return usagef("-warmup-ms must be in [0, %d] (got %d)", maxWarmupMs, o.warmupMs)
	}
	sw, err := parseSweep(o.sweepFlag, os.Getenv)
	if err != nil {
		return err
	}
	o.sweep = sw
	return checkPlot(o.plot, o.plotMetric)
}

// validationMessages returns (and clears) the Vulkan validation layer's
// messages: vk.ValidationMessages, a variable for tests.
var validationMessages = vk.ValidationMessages

// withValidation fails a run during which the validation layer (on with
// VKLORA_VALIDATION=1) reported messages: exit 1, whatever else happened,
// as a result obtained through invalid API use proves nothing.
func withValidation(err error) error {
	msgs := validationMessages()
	if len(msgs) == 0 {
		return err
	}
	verr := fmt.Sprintf("Vulkan validation layer reported %d messages:\n%s", len(msgs), strings.Join(msgs, "\n"))
	if err != nil && !errors.Is(err, errReported) {
		return fmt.Errorf("%s\n(and: %v)", verr, err) // %v: exit 1, not the validation failure's 3
	}
	return errors.New(verr)
}

// tally counts how the cases of a run ended.
type tally struct {
	ran, skipped, invalid, failed, notRun int
	bad                                   []string // the cases that failed validation or to run
}

// summary is the run's last line, e.g.
// "20 cases: 18 ran, 2 skipped (device or host limits), 0 failed".
func (t tally) summary(total int) string {
	cases := "cases"
	if total == 1 {
		cases = "case"
	}
	s := fmt.Sprintf("%d %s: %d ran, %d skipped (device or host limits), %d failed", total, cases, t.ran, t.skipped, t.invalid+t.failed)
	switch {
	case t.invalid > 0 && t.failed > 0:
		s += fmt.Sprintf(" (%d validation, %d errors)", t.invalid, t.failed)
	case t.invalid > 0:
		s += " (validation)"
	case t.failed > 0:
		s += " (errors)"
	}
	if t.notRun > 0 {
		s += fmt.Sprintf(", %d not run (device lost)", t.notRun)
	}
	return s
}

// err is the run's outcome: a case that failed to run (or was not run)
// exits 1, else a validation failure exits 3; skips are not failures.
func (t tally) err(total int) error {
	switch {
	case t.failed > 0 || t.notRun > 0:
		return fmt.Errorf("%d of %d cases failed: %s", t.failed+t.invalid+t.notRun, total, strings.Join(t.bad, "; "))
	case t.invalid > 0:
		return fmt.Errorf("%d of %d cases disagree with the reference and were not timed: %s: %w", t.invalid, total, strings.Join(t.bad, "; "), errValidation)
	}
	return nil
}

// isLimit reports whether a case's error is a device or host limit met at
// run time (one the estimate of fit.go missed): the case is skipped, which
// is not a failure.
func isLimit(err error) bool {
	if errors.Is(err, vk.ErrTooLarge) || errors.Is(err, vk.ErrOutOfDeviceMemory) || errors.Is(err, vk.ErrOutOfHostMemory) {
		return true
	}
	// A grid beyond maxComputeWorkGroupCount: vk.Recorder.Dispatch says
	// so only in its message (with ErrInvalidArgument).
	return errors.Is(err, vk.ErrInvalidArgument) && strings.Contains(err.Error(), "workgroup count")
}

// runSelected runs the cases a command line selected (bench, matmul):
// runCases, a variable so that the flag fuzz target (fuzz_test.go) can take
// the cases instead, without a device.
var runSelected = runCases

// runCases opens the device, validates and times each case and reports it.
// Before a case allocates anything, it is checked against the device's
// limits and the host memory available (fit.go): one that cannot fit is
// skipped with a one-line reason and hint. A case that fails validation is
// reported and not timed, and one that fails to run is reported; either way
// the next case runs (after a lost device, none does). The run ends with a
// summary line; its error exits 1 if a case failed to run, else 3 if one
// failed validation.
func runCases(cases []benchCase, o *runFlags, stdout, stderr io.Writer) (err error) {
	o.profileOut = stderr
	dev, err := openDeviceWith(o.device, o.stats)
	if err != nil {
		return err
	}
	defer func() {
		if o.stats {
			printKernelStats(dev, stderr)
		}
		// With VKLORA_VALIDATION=1 the validation layer's reports fail the run.
		err = withValidation(err)
		if rerr := dev.Release(); rerr != nil && err == nil {
			err = rerr
		}
	}()
	validationMessages() // start clean
	variants, err := o.sweep.variants(dev)
	if err != nil {
		return err
	}
	eng := variants[0].eng
	rec, err := dev.NewRecorder()
	if err != nil {
		return err
	}
	defer func() { rec.Release() }()
	info := dev.Info()
	pk := runPeak(dev, o, stderr) // nil with -no-peak
	rep := newReporter(stdout, o.json, info, o.sweep.widen(cases))
	prog := newProgress(stderr, len(cases))
	prog.start()
	defer prog.finish()
	var t tally
	total := len(cases) * len(variants)
	// account records one variant's outcome of case c; it renews the
	// recorder after an error (the recording may have stopped halfway) and
	// reports whether nothing more can run: a lost device, or no new
	// recorder (fatal).
	var fatal error
	account := func(c benchCase, v variant, res result, err error) (stop bool) {
		name := c.String() + sweepForm("", v.value)
		switch {
		case err == nil:
			t.ran++
			prog.do(func() { rep.row(res) })
			return false
		case errors.Is(err, errValidation):
			t.invalid++
			t.bad = append(t.bad, name+" (validation)")
			prog.do(func() {
				fmt.Fprintf(stderr, "%v\n", err)
				rep.row(res)
			})
			return false
		case isLimit(err):
			t.skipped++
			prog.printf("%s\n", skipLine(c, "at run time: "+err.Error(), hint(c, deviceLimits(info, memAvailable()))))
		default:
			t.failed++
			t.bad = append(t.bad, name+" (error)")
			prog.printf("FAIL %s: %v\n", name, err)
		}
		rec.Release()
		if errors.Is(err, vk.ErrDeviceLost) {
			return true
		}
		rec, fatal = dev.NewRecorder()
		return fatal != nil
	}
cases:
	for i, c := range cases {
		prog.startCase(i, c.String())
		if why, tip := fitCase(c, info); why != "" {
			t.skipped += len(variants)
			prog.printf("%s\n", skipLine(c, why, tip))
			continue
		}
		res := newResult(c, info)
		r, err := setupCase(eng, c, o, uint64(i), prog)
		if err == nil {
			if err = prepareCase(dev, r, variants, prog); err != nil {
				r.Release()
			}
		}
		if err != nil {
			stop := account(c, variants[0], res, err)
			// The set-up is every variant's: count the others alike.
			if isLimit(err) {
				t.skipped += len(variants) - 1
			} else {
				t.failed += len(variants) - 1
			}
			if stop {
				t.notRun = total - (i+1)*len(variants)
				break
			}
			continue
		}
		for j, v := range variants {
			if r.SetEngine != nil {
				r.SetEngine(v.eng)
			}
			res := newResult(c, info)
			res.Form, res.Sweep = sweepForm(c.Form, v.value), sweepLabel(o.sweep.name, v.value)
			err := measureCase(v.eng, rec, r, c, &res, o, prog)
			pk.annotate(&res, v.eng)
			if account(c, v, res, err) {
				r.Release()
				t.notRun = total - i*len(variants) - j - 1
				break cases
			}
		}
		r.Release()
	}
	if fatal != nil {
		return fatal
	}
	prog.finish()
	rep.done()
	sum := "summary: " + t.summary(total)
	if o.json {
		fmt.Fprintln(stderr, sum) // stdout holds JSON lines only
	} else {
		fmt.Fprintln(stdout, sum)
	}
	if o.plot != "" {
		if err := writePlot(o.plot, o.plotMetric, info.Name, rep.rows); err != nil {
			if t.err(total) == nil {
				return err
			}
			fmt.Fprintf(stderr, "%v\n", err) // the failed cases decide the exit status
		}
	}
	return t.err(total)
}

// fitCase checks c against the device's limits and the host memory
// available now. It returns why c cannot run and a hint ("" and "" when it
// fits). Memory the Go heap still holds from earlier cases is given back to
// the OS before a host-memory verdict is final.
func fitCase(c benchCase, info vk.DeviceInfo) (why, hintText string) {
	lim := deviceLimits(info, memAvailable())
	if why = c.Need.fit(lim); why == "" {
		return "", ""
	}
	debug.FreeOSMemory()
	lim = deviceLimits(info, memAvailable())
	if why = c.Need.fit(lim); why == "" {
		return "", ""
	}
	return why, hint(c, lim)
}

// setupCase draws case i's inputs and uploads them on eng's device.
func setupCase(eng *lora.Engine, c benchCase, o *runFlags, i uint64, prog *progress) (*benchRun, error) {
	if prog != nil {
		prog.phase("setup")
	}
	return c.Setup(eng, rand.New(rand.NewPCG(o.seed, i)))
}

// prepareCase builds the kernels of every variant's step of r in parallel
// (vk.Device.Prepare: each step recorded dry, nothing run), so that a cold
// driver compiles them side by side rather than one at a time as the
// first runs reach them; on an H200 one workgroup-scope matmul kernel takes
// 11–39 s to compile. A dry step changes nothing the validation depends
// on: it reads the dropout generators' offsets when it runs.
func prepareCase(dev *vk.Device, r *benchRun, variants []variant, prog *progress) error {
	if prog != nil {
		prog.phase("build kernels")
	}
	record := r.Prepare
	if record == nil {
		record = r.Record
	}
	return dev.Prepare(func(rec *vk.Recorder) error {
		for _, v := range variants {
			if r.SetEngine != nil {
				r.SetEngine(v.eng)
			}
			if err := record(rec); err != nil {
				return err
			}
			if err := rec.Submit(); err != nil { // frees the step's temporaries
				return err
			}
		}
		return nil
	})
}

// measureCase runs r once (measuring the memory a step allocates),
// validates the output against the reference, and only then times it on
// eng, into res. prog (nil: none) hears its phases.
func measureCase(eng *lora.Engine, rec *vk.Recorder, r *benchRun, c benchCase, res *result, o *runFlags, prog *progress) error {
	phase := func(string) {}
	var report timeProgress
	if prog != nil {
		phase, report = prog.phase, prog.timing
	}
	// One step outside the timing loop: it measures the device memory the
	// step allocates above what the case holds (its outputs, saved contexts
	// and temporaries, freed at Submit).
	phase("first run")
	dev := eng.Device()
	dev.ResetPeak()
	before, _ := dev.MemoryStats()
	if err := r.Record(rec); err != nil {
		return err
	}
	if err := rec.Submit(); err != nil {
		return err
	}
	_, peak := dev.MemoryStats()
	extra := peak - before
	res.PeakExtraMiB = float64(extra) / (1 << 20)
	res.PeakTotalMiB = float64(peak) / (1 << 20)
	phase("validate")
	relErr, tol, detail, err := r.Validate()
	if err != nil {
		return err
	}
	res.RelErr, res.Tol = jsonNum(relErr), tol
	if !(relErr <= tol) {
		return fmt.Errorf("%s: relative error %.3g > tolerance %.3g, not timed\n  %s: %w", c, relErr, tol, detail, errValidation)
	}
	res.Validated = true
	st, err := timeGPUChunks(rec, dev, o.warm(), o.reps, stepsPerSubmit(dev, before, extra), r.Record, report)
	if err != nil {
		return err
	}
	res.setStats(st, c)
	if o.profile {
		phase("profile")
		rec.SetProfile(true)
		err := r.Record(rec)
		if err == nil {
			err = rec.Submit()
		}
		rec.SetProfile(false)
		if err != nil {
			return err
		}
		write := func() { profile.Write(o.profileOut, c.String()+sweepForm("", res.Sweep), rec.Profile()) }
		if prog != nil {
			prog.do(write)
		} else {
			write()
		}
	}
	return nil
}

// stepsPerSubmit bounds the steps recorded into one submission so that what
// they hold until the Submit (extra bytes each) fits in half the device's
// local memory beside what is allocated (current bytes).
func stepsPerSubmit(dev *vk.Device, current, extra uint64) int {
	if extra == 0 {
		return maxTimedPerSubmit
	}
	budget := dev.Caps().DeviceLocalBytes / 2
	if budget <= current {
		return 1
	}
	return int(min(max((budget-current)/extra, 1), maxTimedPerSubmit))
}
