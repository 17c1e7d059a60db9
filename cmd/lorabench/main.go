// Command lorabench validates and times vklora's GPU ops on a Vulkan device.
//
//	lorabench devices [-json]
//	lorabench matmul  [-m M -n N -k K | -sizes S,S,...] [-dtype f32|f16|bf16] [-form nt|nn|tn] [-weight dense,nf4] ...
//	lorabench bench   [-quick] [-op OP,...] [-preset P,... | -m M -hidden H -inter I -q Q -kv KV -r R -act A]
//	                  [-dtype D,...] [-weight dense,nf4] [-pass fwd|fwdbwd|both] [-keep-saved] [-json] [-plot FILE.png] [-device SEL]
//	lorabench check   FILE|DIR...
//	lorabench peak    [-fresh] [-cache DIR] [-json]
//
// Every op is checked against the float64 reference (package ref) before it is
// timed; a result that fails validation is never timed (exit 3). Times come
// from GPU timestamps: warm-up runs, then the median of repeats. Base
// weights are dense or NF4 (-weight); with both, each NF4 row is compared
// with its dense twin (time and peak-memory ratios).
//
// Files: main.go (dispatch, usage, exit codes), devices.go, matmul.go (the
// matmul op and its reference), bench.go (the op table and flags of
// `bench`: add ops there), layers.go (the LoRA layer ops matmul_lora, o,
// qkv, mlp at the presets or a custom shape), weight.go (-weight: dense or NF4
// base weights), timing.go (timeGPU), report.go (table and JSON lines),
// compare.go (NF4 vs dense ratios), plot.go (-plot), progress.go (stderr
// progress bar), check.go (the check subcommand), peak.go and
// peak_cache.go (the peak subcommand, its cache and frac_peak).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes.
const (
	exitOK       = 0
	exitError    = 1 // runtime error (no device, allocation failure, …)
	exitUsage    = 2 // bad command line
	exitValidate = 3 // a GPU result disagreed with the reference
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type command struct {
	name, args, summary string
	run                 func(args []string, stdout, stderr io.Writer) error
}

// commands lists the subcommands in usage order.
func commands() []command {
	return []command{
		{"devices", "[-json]", "list Vulkan devices and their capabilities; * marks the default", cmdDevices},
		{"matmul", "[-m M -n N -k K | -sizes S,...] [-dtype D] [-form nt|nn|tn] [-weight dense,nf4] [-reps N] [-warmup N] [-warmup-ms MS] [-device SEL] [-json] [-plot FILE.png]",
			"validate, then time C = op(A)·op(B)", cmdMatmul},
		{"bench", "[-quick] [-op matmul,matmul_lora,o,qkv,mlp] [-preset llama3-8b,gemma-2b,qwen2.5-0.5b | -m M -hidden H -inter I -q Q -kv KV -r R -act A]\n" +
			"           [-dtype D,...] [-weight dense,nf4] [-pass fwd|fwdbwd|both] [-keep-saved] [-json] [-plot FILE.png] [-device SEL] [-reps N] [-warmup N] [-warmup-ms MS]",
			"validate and time the benchmark suite: matmul and the LoRA layers (time, TFLOP/s, peak extra MiB of a step)", cmdBench},
		{"check", "FILE|DIR...", "check results files (not yet implemented)", cmdCheck},
		{"peak", peakSynopsis, "measure the device's ceilings (coopmat and fp32 FMA TFLOP/s, copy GB/s), cached per device and driver", cmdPeak},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: lorabench <command> [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n           %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "`lorabench <command> -h` lists a command's flags. The device is -device SEL")
	fmt.Fprintln(w, "(index or name substring), else $VKLORA_DEVICE, else the first discrete GPU.")
	fmt.Fprintln(w, "Exit status: 0 ok, 1 runtime error, 2 usage error, 3 validation failure.")
}

// run is main without os.Exit, so tests can drive the command in-process.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return exitCode(c.run(args[1:], stdout, stderr), c.name, stderr)
		}
	}
	fmt.Fprintf(stderr, "lorabench: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

// usageError is a bad command line (exit 2).
type usageError struct {
	msg     string
	printed bool // the flag package already printed it with the usage
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errValidation marks a GPU result that disagreed with the reference (exit 3).
var errValidation = errors.New("validation failed")

// errReported is a runtime error (exit 1) whose message is already printed.
var errReported = errors.New("reported")

// errHelp is returned after -h printed the flags: exit 0.
var errHelp = flag.ErrHelp

func exitCode(err error, cmd string, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errHelp):
		return exitOK
	case errors.Is(err, errReported):
		return exitError
	case errors.As(err, &ue):
		if ue.printed {
			return exitUsage
		}
		fmt.Fprintf(stderr, "lorabench %s: %v\n(run `lorabench %s -h` for its flags)\n", cmd, err, cmd)
		return exitUsage
	case errors.Is(err, errValidation):
		fmt.Fprintf(stderr, "lorabench %s: %v\n", cmd, err)
		return exitValidate
	}
	fmt.Fprintf(stderr, "lorabench %s: %v\n", cmd, err)
	return exitError
}

// newFlags makes a subcommand's FlagSet; parse errors become usage errors.
func newFlags(name, args string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("lorabench "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: lorabench %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args; a flag error has already been printed with the usage
// by the flag package, so it returns a usage error that adds nothing more.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return &usageError{msg: err.Error(), printed: true}
	}
	return nil
}

// setFlags returns the names of the flags given on the command line.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %s", strings.Join(fs.Args(), " "))
	}
	return nil
}
