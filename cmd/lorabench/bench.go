package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/vk"
)

// benchCase is one validated, timed op at one shape and dtype: a row of the
// report. Each op (matmul here; matmul_lora, o, qkv, mlp later) provides a
// constructor that fills one in, see matmulCase in matmul.go.
//
// To add an op to `lorabench bench`:
//  1. In a new file (e.g. mlp.go), write a constructor returning a benchCase:
//     Op ("mlp"), Form (the variant, e.g. the preset "llama3-8b" or
//     "fwd"/"fwd+bwd"), M/N/K (the problem dims: for LoRA layers the tokens,
//     hidden and intermediate sizes), FLOPs and Bytes (state them as
//     anchors.md does), and Setup.
//  2. Setup allocates the inputs on the engine's device (fresh random values
//     from rng, rounded to the dtype so the float64 reference sees what the
//     GPU stores) and returns a benchRun: Record records ONE run of the op
//     into rec without submitting (timeGPU repeats it), Validate compares the
//     outputs of the run last submitted with the ref package, and Release
//     frees every tensor (the device errors on leaks).
//  3. Add a benchOp entry to benchOps below whose Cases returns the quick
//     (lavapipe, well under a minute) or full sweep, e.g. over the presets
//     llama3-8b, gemma-2b and qwen2.5-0.5b. `lorabench <op>` subcommands
//     are optional: runCase and the reporter are shared.
type benchCase struct {
	Op    string      // "matmul"
	Form  string      // variant: operand layout, preset, fwd/bwd …
	DType dtype.DType // storage dtype of inputs and outputs
	M, N  int         // problem dims reported in the row
	K     int
	FLOPs float64 // floating-point operations of one run
	Bytes float64 // minimum bytes one run reads and writes in device memory
	Setup func(eng *lora.Engine, rng *rand.Rand) (*benchRun, error)
}

// benchRun is a case made ready on a device.
type benchRun struct {
	Record   func(rec *vk.Recorder) error
	Validate func() (relErr, tol float64, detail string, err error)
	Release  func()
}

func (c benchCase) String() string {
	return fmt.Sprintf("%s %s %s %dx%dx%d", c.Op, c.DType, c.Form, c.M, c.N, c.K)
}

// benchOp is one op of the `bench` suite.
type benchOp struct {
	Name  string
	Cases func(quick bool) []benchCase
}

// benchOps is the suite `lorabench bench` runs, in order.
var benchOps = []benchOp{
	{Name: "matmul", Cases: matmulSweep},
}

// matmulSweep: cubes in form nt (X·Wᵀ, the forward projection).
func matmulSweep(quick bool) []benchCase {
	sizes, dts := []int{1024, 4096}, []dtype.DType{dtype.F32, dtype.BF16}
	if quick {
		sizes, dts = []int{256, 512}, dtype.Floats
	}
	var cs []benchCase
	for _, s := range sizes {
		for _, d := range dts {
			cs = append(cs, matmulCase(s, s, s, d, "nt"))
		}
	}
	return cs
}

func cmdBench(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", "[-quick] [-json] [-device SEL] [-reps N] [-warmup N]", stderr)
	quick := fs.Bool("quick", false, "small sizes (256³, 512³ in f32, f16, bf16) that finish quickly on lavapipe; default 1024³ and 4096³ in f32, bf16")
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
	var cases []benchCase
	for _, op := range benchOps {
		cases = append(cases, op.Cases(*quick)...)
	}
	return runCases(cases, o, stdout, stderr)
}

// runFlags are the flags every timing command shares.
type runFlags struct {
	reps, warmup int
	device       string
	json         bool
	seed         uint64
}

func addRunFlags(fs *flag.FlagSet) *runFlags {
	o := &runFlags{}
	fs.IntVar(&o.reps, "reps", 20, "timed repeats (the median is reported)")
	fs.IntVar(&o.warmup, "warmup", 5, "untimed warm-up runs")
	fs.StringVar(&o.device, "device", "", "device index or name substring (default $VKLORA_DEVICE, else the first discrete GPU)")
	fs.BoolVar(&o.json, "json", false, "one JSON object per result per line instead of a table")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the random inputs")
	return o
}

func (o *runFlags) check() error {
	if o.reps < 1 {
		return usagef("-reps must be ≥ 1 (got %d)", o.reps)
	}
	if o.warmup < 0 {
		return usagef("-warmup must be ≥ 0 (got %d)", o.warmup)
	}
	return nil
}

// runCases opens the device, validates and times each case and reports it.
// A case that fails validation is reported, not timed, and the others still
// run; the error then wraps errValidation (exit 3).
func runCases(cases []benchCase, o *runFlags, stdout, stderr io.Writer) (err error) {
	dev, err := vk.Open(vk.Options{Select: o.device})
	if err != nil {
		return err
	}
	defer func() {
		// With VKLORA_VALIDATION=1 the validation layer's reports fail the run.
		if msgs := vk.ValidationMessages(); len(msgs) > 0 && err == nil {
			err = fmt.Errorf("Vulkan validation reported %d messages:\n%s", len(msgs), strings.Join(msgs, "\n"))
		}
		if rerr := dev.Release(); rerr != nil && err == nil {
			err = rerr
		}
	}()
	vk.ValidationMessages() // start clean
	eng, err := lora.NewEngine(dev)
	if err != nil {
		return err
	}
	rec, err := dev.NewRecorder()
	if err != nil {
		return err
	}
	defer rec.Release()
	rep := newReporter(stdout, o.json, dev.Info())
	prog := newProgress(stderr, len(cases))
	defer prog.finish()
	var failed []string
	for i, c := range cases {
		prog.step(i, c.String())
		res, err := runCase(eng, rec, c, o, uint64(i))
		if errors.Is(err, errValidation) {
			prog.clear()
			fmt.Fprintf(stderr, "%v\n", err)
			failed = append(failed, c.String())
			rep.row(res)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
		prog.clear()
		rep.row(res)
	}
	rep.done()
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d cases disagree with the reference and were not timed: %v: %w", len(failed), len(cases), failed, errValidation)
	}
	return nil
}

// runCase sets the case up, runs it once and validates the output against
// the reference, and only then times it.
func runCase(eng *lora.Engine, rec *vk.Recorder, c benchCase, o *runFlags, i uint64) (result, error) {
	res := newResult(c, eng.Device().Info())
	r, err := c.Setup(eng, rand.New(rand.NewPCG(o.seed, i)))
	if err != nil {
		return res, err
	}
	defer r.Release()
	if err := r.Record(rec); err != nil {
		return res, err
	}
	if err := rec.Submit(); err != nil {
		return res, err
	}
	relErr, tol, detail, err := r.Validate()
	if err != nil {
		return res, err
	}
	res.RelErr, res.Tol = jsonNum(relErr), tol
	if !(relErr <= tol) {
		return res, fmt.Errorf("%s: relative error %.3g > tolerance %.3g, not timed\n  %s: %w", c, relErr, tol, detail, errValidation)
	}
	res.Validated = true
	st, err := timeGPU(rec, eng.Device(), o.warmup, o.reps, r.Record)
	if err != nil {
		return res, err
	}
	res.setStats(st, c)
	return res, nil
}
