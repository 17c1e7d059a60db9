// Command lorafit fine-tunes LoRA adapters on the decoder layers of a
// Hugging Face checkpoint with vklora, on any Vulkan device:
//
//	lorafit -model DIR [-layers N] [-r R -alpha A -dropout P -target q_proj,...] [-init-adapter DIR]
//	        [-lr LR -warmup N -min-lr F -weight-decay W -max-grad-norm G] [-steps S -batch M -pool K]
//	        [-teacher-rank T -teacher-scale S] [-dtype f32|f16|bf16] [-seed N] [-device SEL]
//	        [-out DIR] [-plot FILE.png] [-dump FILE.safetensors]
//	lorafit -make-model DIR [-preset tiny|llama3-8b|gemma-2b|qwen2.5-0.5b] ...   (a random checkpoint first)
//
// The task: the adapted projections (q, k, v, o, gate, up, down) of the
// first N decoder layers learn to reproduce a teacher, the same frozen base
// plus a hidden low-rank delta, on random inputs (teacher.go, inputs.go).
// The loss is the mean over the layers' q, k, v, o and MLP outputs of each
// one's mean squared error against the teacher's, computed on the device
// (loss.go); AdamW (package optim) takes the step. Each step's loss goes to
// stderr with the rate and an ETA; at the end the adapter is written to
// -out as PEFT's save_pretrained writes it, with loss.png (the curve) and
// lorafit.json (every loss, the rate, the settings). docs/FINETUNE.md is the
// longer account; scripts/gpu/lorafit_peft.py loads the adapter with PEFT,
// compares its outputs with -dump's and times the same loop in PyTorch.
//
// Files: main.go (flags, exit codes), presets.go (-make-model), train.go
// (the loop), teacher.go, inputs.go, loss.go, progress.go, plot.go,
// report.go (lorafit.json), dump.go (-dump).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/hf"
	"github.com/vklora/vklora/internal/cachedir"
	"github.com/vklora/vklora/internal/profile"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/vk"
)

// Exit codes: 2 is a bad command line only (main makes a Go crash abort
// instead of exiting 2, as lorabench does).
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	debug.SetTraceback("crash")
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError is a bad command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// run is main without os.Exit.
func run(args []string, stdout, stderr io.Writer) int {
	c, dev, err := parse(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case err != nil:
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "lorafit: %v (lorafit -h lists the flags)\n", err)
			return exitUsage
		}
		fmt.Fprintf(stderr, "lorafit: %v\n", err)
		return exitError
	}
	if err := fit(c, dev, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "lorafit: %v\n", err)
		return exitError
	}
	return exitOK
}

// fit makes the model if asked, opens the device and trains.
func fit(c *fitConfig, device string, stdout, stderr io.Writer) (err error) {
	if c.preset != "" {
		p, _ := findPreset(c.preset)
		fmt.Fprintf(stderr, "lorafit: writing a random %s checkpoint of %d layers to %s\n", p.name, c.layers, c.model)
		if err := makeModel(c.model, p, c.layers, c.dtype, c.seed); err != nil {
			return err
		}
	}
	// A bad checkpoint directory fails before the device is opened.
	if _, err := hf.ReadConfig(c.model); err != nil {
		return err
	}
	opts := vk.Options{Select: device, BufferCacheBytes: c.bufferCache, PipelineCacheDir: cachedir.Pipelines()}
	if os.Getenv("VKLORA_LOG_KERNELS") == "1" { // each kernel built, with its compile time
		opts.KernelLog = stderr
	}
	dev, err := vk.Open(opts)
	if err != nil {
		return err
	}
	// Close reports device objects left live: a leak is a failed run.
	defer func() {
		if cerr := dev.Close(); err == nil {
			err = cerr
		}
	}()
	eng, err := lora.NewEngine(dev, lora.Options{})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "lorafit: device %s\n", dev.Info().Name)
	res, err := train(eng, c, newProgress(stderr))
	if err != nil {
		return err
	}
	return finish(c, res, stdout)
}

// finish writes the plot and lorafit.json and prints the summary.
func finish(c *fitConfig, res *result, stdout io.Writer) error {
	adapter := fmt.Sprintf("r=%d", c.r)
	if c.initAdapter != "" {
		adapter = "from " + filepath.Base(c.initAdapter)
	}
	title := fmt.Sprintf("lorafit: %s, %d layer(s), %s, %s, M=%d", filepath.Base(c.model), len(res.Layers), adapter, res.DType, c.tokens)
	if err := writePlot(c.plot, title, res.Losses); err != nil {
		return err
	}
	if err := writeReport(filepath.Join(c.out, reportName), c, res); err != nil {
		return err
	}
	if c.profile {
		profile.Write(stdout, fmt.Sprintf("of step %d", len(res.Losses)), res.Profile)
	}
	first, last := res.Losses[0], res.Losses[len(res.Losses)-1]
	fmt.Fprintf(stdout, "lorafit: %d steps in %.1fs (%.3g step/s after %d warm-up steps): loss %.3e → %.3e (%.3gx lower); %d trainable parameters\n",
		len(res.Losses), res.Seconds, res.StepsPerSec, warmSteps(len(res.Losses)), first, last, first/last, res.Params)
	if res.GPUMs > 0 {
		fmt.Fprintf(stdout, "lorafit: a step takes %.3g ms (median): %.3g ms recording it on the host, %.3g ms of GPU work, %.3g ms the rest (submit, wait, read-back)\n",
			res.WallMs, res.RecordMs, res.GPUMs, max(0, res.WallMs-res.RecordMs-res.GPUMs))
	}
	fmt.Fprintf(stdout, "lorafit: building the step's kernels in parallel took %.3g s, the first step %.3g s; %d kernels built, %.3g s of driver compile time in all\n",
		res.PrepareSec, res.FirstStepSec, res.KernelsBuilt, res.BuildSec)
	fmt.Fprintf(stdout, "lorafit: adapter in %s (PEFT: PeftModel.from_pretrained(model, %q)), loss curve %s\n", c.out, c.out, c.plot)
	return nil
}

const allTargets = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"

// parse reads the command line into a fitConfig and the device selector.
func parse(args []string, stderr io.Writer) (*fitConfig, string, error) {
	fs := flag.NewFlagSet("lorafit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &fitConfig{}
	var dt, targets, device string
	var seed uint64
	fs.StringVar(&c.model, "model", "", "Hugging Face checkpoint `DIR` (config.json and safetensors)")
	makeDir := fs.String("make-model", "", "write a random checkpoint of -preset's sizes with -layers layers to `DIR` first, and train on it")
	presetName := fs.String("preset", "tiny", "sizes for -make-model: "+strings.Join(presetNames(), ", "))
	fs.IntVar(&c.layers, "layers", 1, "train the first `N` decoder layers")
	fs.IntVar(&c.r, "r", 8, "LoRA rank of a fresh adapter")
	fs.Float64Var(&c.alpha, "alpha", 16, "lora_alpha of a fresh adapter (scale alpha/r)")
	fs.Float64Var(&c.dropout, "dropout", 0, "lora_dropout of a fresh adapter")
	fs.StringVar(&targets, "target", allTargets, "comma-separated target_modules of a fresh adapter")
	fs.StringVar(&c.initAdapter, "init-adapter", "", "start from the PEFT adapter in `DIR` (its config sets r, alpha, dropout and targets)")
	fs.IntVar(&c.teacherRank, "teacher-rank", 0, "rank of the teacher's hidden delta (0: r/2, at least 1)")
	fs.Float64Var(&c.teacherStd, "teacher-scale", 0.2, "size of the teacher's delta outputs against base outputs of about 1")
	fs.Float64Var(&c.lr, "lr", 1e-2, "AdamW learning rate")
	fs.IntVar(&c.warmup, "warmup", 0, "linear warm-up steps of the cosine schedule")
	fs.Float64Var(&c.minLR, "min-lr", 0.1, "the cosine schedule's final rate, a fraction of -lr")
	fs.Float64Var(&c.weightDecay, "weight-decay", 0, "AdamW decoupled weight decay")
	fs.Float64Var(&c.maxGradNorm, "max-grad-norm", 1, "clip gradients to this global norm (0: no clipping)")
	fs.IntVar(&c.steps, "steps", 150, "training steps")
	fs.IntVar(&c.tokens, "batch", 0, "tokens per step `M` (0: the preset's with -make-model, else 1024)")
	fs.IntVar(&c.pool, "pool", 4, "input batches drawn once and cycled (0: a fresh batch each step, drawn on the host)")
	fs.StringVar(&dt, "dtype", "", "layer dtype f32, f16 or bf16 (default: the checkpoint's; -make-model stores it, default bf16)")
	fs.Uint64Var(&seed, "seed", 1, "seed of the adapter's init, the teacher, the inputs and -make-model")
	fs.StringVar(&c.out, "out", "lorafit-out", "write the PEFT adapter, loss.png and lorafit.json to `DIR`")
	fs.StringVar(&c.plot, "plot", "", "loss curve `FILE.png` (default: -out's loss.png)")
	fs.BoolVar(&c.profile, "profile", false, "time every dispatch of the last step and print them and the time per kernel before the summary (its timestamps serialize the step)")
	fs.StringVar(&c.dump, "dump", "", "write a batch's inputs and the trained outputs to `FILE.safetensors` (scripts/gpu/lorafit_peft.py reads it)")
	fs.Int64Var(&c.bufferCache, "buffer-cache", 0, "`BYTES` of released buffers' memory kept for reuse (0: the device's default, a quarter of a GPU's memory, none on CPU devices; -1: none)")
	fs.StringVar(&device, "device", os.Getenv("VKLORA_DEVICE"), "Vulkan device: index or name substring (default $VKLORA_DEVICE, else the first discrete GPU)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: lorafit -model DIR | -make-model DIR [-preset P] [flags]")
		fmt.Fprintln(stderr, "Fine-tunes LoRA adapters of the first -layers decoder layers to match a teacher (the same")
		fmt.Fprintln(stderr, "base plus a hidden low-rank delta) on random inputs; writes a PEFT adapter. Exit status:")
		fmt.Fprintln(stderr, "0 done, 1 runtime error, 2 bad command line.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, "", err
		}
		return nil, "", usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return nil, "", usagef("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c.seed = seed
	if err := c.resolve(set, *makeDir, *presetName, dt, targets); err != nil {
		return nil, "", err
	}
	return c, device, nil
}

// resolve checks the flags against each other and fills in the defaults
// that depend on others.
func (c *fitConfig) resolve(set map[string]bool, makeDir, presetName, dt, targets string) error {
	switch {
	case c.model == "" && makeDir == "":
		return usagef("-model DIR or -make-model DIR is required")
	case c.model != "" && makeDir != "":
		return usagef("-model and -make-model exclude each other")
	case set["preset"] && makeDir == "":
		return usagef("-preset sets the sizes of -make-model")
	}
	tokens := 1024
	if makeDir != "" {
		p, ok := findPreset(presetName)
		if !ok {
			return usagef("-preset %q: want one of %s", presetName, strings.Join(presetNames(), ", "))
		}
		c.model, c.preset, tokens = makeDir, p.name, p.tokens
	}
	if c.tokens == 0 {
		c.tokens = tokens
	}
	if dt != "" {
		d, err := dtype.Parse(dt)
		if err != nil || !d.IsFloat() {
			return usagef("-dtype %q: want f32, f16 or bf16", dt)
		}
		c.dtype = d
	}
	if c.initAdapter != "" {
		for _, f := range []string{"r", "alpha", "dropout", "target"} {
			if set[f] {
				return usagef("-%s: the config of -init-adapter %s sets it", f, c.initAdapter)
			}
		}
	}
	for _, t := range strings.Split(targets, ",") {
		t = strings.TrimSpace(t)
		if !isModule(t) {
			return usagef("-target %q: want projection names among %s", t, allTargets)
		}
		c.targets = append(c.targets, t)
	}
	if c.teacherRank == 0 {
		c.teacherRank = max(1, c.r/2)
	}
	for _, x := range []struct {
		name string
		bad  bool
	}{
		{"layers", c.layers < 1}, {"r", c.r < 1}, {"alpha", !(c.alpha > 0)}, {"dropout", !(c.dropout >= 0 && c.dropout < 1)},
		{"teacher-rank", c.teacherRank < 1}, {"teacher-scale", !(c.teacherStd >= 0)}, {"lr", !(c.lr >= 0)},
		{"warmup", c.warmup < 0 || c.warmup > c.steps}, {"min-lr", !(c.minLR >= 0 && c.minLR <= 1)},
		{"weight-decay", !(c.weightDecay >= 0)}, {"max-grad-norm", !(c.maxGradNorm >= 0)},
		{"steps", c.steps < 1}, {"batch", c.tokens < 1}, {"pool", c.pool < 0},
	} {
		if x.bad {
			return usagef("-%s is out of range", x.name)
		}
	}
	if c.plot == "" {
		c.plot = filepath.Join(c.out, "loss.png")
	} else if !strings.EqualFold(filepath.Ext(c.plot), ".png") {
		return usagef("-plot %q: want a .png file", c.plot)
	}
	return nil
}

func isModule(name string) bool {
	for _, m := range hf.Modules {
		if string(m) == name {
			return true
		}
	}
	return false
}
