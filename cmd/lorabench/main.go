// Command lorabench validates and times vklora's GPU ops on a Vulkan device.
//
//	lorabench devices [-json]
//	lorabench matmul  [-m M -n N -k K | -sizes S,S,...] [-dtype f32|f16|bf16] [-form nt|nn|tn] [-weight dense,nf4] ...
//	lorabench bench   [-quick] [-op OP,...] [-preset P,... | -m M -hidden H -inter I -q Q -kv KV -r R -act A]
//	                  [-dtype D,...] [-weight dense,nf4] [-pass fwd|fwdbwd|both] [-keep-saved]
//	                  [-dropout P] [-lora-bias] [-dora] [-json] [-plot FILE.png] [-device SEL]
//	lorabench check   [-device SEL] [-json] FILE|DIR...
//	lorabench peak    [-fresh] [-cache DIR] [-json]
//
// Every op is checked against the float64 reference (package ref) before it is
// timed; a result that fails validation is never timed (exit 3). Times come
// from GPU timestamps: warm-up runs, then the median of repeats. Base
// weights are dense or NF4 (-weight); with both, each NF4 row is compared
// with its dense twin (time and peak-memory ratios). Before a case allocates
// anything it is checked against the device's limits and the host memory
// available (fit.go); a case that cannot fit is skipped with the reason and
// the sweep goes on.
//
// Files: main.go (dispatch, usage, exit codes), devices.go, matmul.go (the
// matmul op and its reference), bench.go (the op table and flags of
// `bench`: add ops there; runCases), layers.go (the LoRA layer ops
// matmul_lora, o, qkv, mlp at the presets or a custom shape), layer_ext.go
// (-dropout, -lora-bias, -dora: PEFT's extensions on the layer ops), weight.go
// (-weight: dense or NF4 base weights), fit.go (device and host limits,
// skips and their hints), timing.go (timeGPU), report.go (table and JSON
// lines), compare.go (NF4 vs dense ratios), plot.go (-plot), progress.go
// (stderr progress and ETA), check.go (the check subcommand), peak.go and
// peak_cache.go (the peak subcommand, its cache and frac_peak), options.go
// (the VKLORA_* switches, read once per command), kstats.go (-stats).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// Exit codes. 2 means a bad command line and nothing else: a Go runtime
// crash (an unrecovered panic, or a fatal error such as running out of
// memory) would also exit 2, so main makes it abort with SIGABRT instead
// (crashMode).
const (
	exitOK       = 0
	exitError    = 1 // runtime error (no device, a case that failed to run, validation-layer messages, …)
	exitUsage    = 2 // bad command line
	exitValidate = 3 // a GPU result disagreed with the reference (and nothing else failed)
)

// exitCodesHelp documents the exit codes in `lorabench help`.
const exitCodesHelp = `Exit status: 0 ok (every case validated and timed, or skipped because it
exceeds a device or host-memory limit); 1 runtime error (no device, a case
that failed to run, Vulkan validation-layer messages, unreadable files);
2 usage error (bad command line) only; 3 validation failure (a GPU result
outside the tolerance, and nothing else failed). A Go runtime crash (panic,
out of memory) aborts with SIGABRT (status 134 in a shell), never 2.`

func main() {
	crashMode()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// crashMode makes an unrecovered panic or a fatal runtime error (which exit
// with status 2 by default, the usage-error status) abort the process with
// SIGABRT after printing every goroutine's stack.
func crashMode() { debug.SetTraceback("crash") }

type command struct {
	name, args, summary string
	run                 func(args []string, stdout, stderr io.Writer) error
}

// commands lists the subcommands in usage order. A new command is one more
// entry here (its function may live in a file of its own).
func commands() []command {
	return []command{
		{"devices", devicesSynopsis, "list Vulkan devices and their capabilities; * marks the default", cmdDevices},
		{"matmul", matmulSynopsis, "validate, then time C = op(A)·op(B) at one or more shapes and dtypes", cmdMatmul},
		{"bench", benchSynopsis,
			"validate and time the benchmark suite: matmul and the LoRA layers matmul_lora, o, qkv, mlp\n" +
				"(time, TFLOP/s, peak MiB of a step); cases that exceed a device or host limit are skipped", cmdBench},
		{"check", checkSynopsis,
			"run PyTorch conformance vectors (.safetensors files, or directories of them) on the device:\n" +
				"one row per expected tensor with its relative error and tolerance; exit 3 if any is outside", cmdCheck},
		{"peak", peakSynopsis, "measure the device's ceilings (coopmat and fp32 FMA TFLOP/s, copy GB/s), cached per device and driver", cmdPeak},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: lorabench <command> [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %s %s\n", c.name, wrapFlags(c.args, 4+len(c.name), 78))
		for _, l := range strings.Split(c.summary, "\n") {
			fmt.Fprintf(w, "      %s\n", l)
		}
	}
	fmt.Fprintln(w, "  help [command]")
	fmt.Fprintln(w, "      this text, or a command's flags (as `lorabench <command> -h`)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The device is -device SEL (index or name substring), else $VKLORA_DEVICE, else")
	fmt.Fprintln(w, "the first discrete GPU. VKLORA_VALIDATION=1 turns on the Vulkan validation layer;")
	fmt.Fprintln(w, "a run during which it reports messages fails (exit 1). Progress and skipped")
	fmt.Fprintln(w, "cases go to stderr; results to stdout.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, exitCodesHelp)
}

// wrapFlags breaks a synopsis into lines of at most width columns, the
// continuation lines indented by indent spaces.
func wrapFlags(s string, indent, width int) string {
	var b strings.Builder
	col := indent
	for i, f := range splitSynopsis(s) {
		if i > 0 {
			if col+1+len(f) > width {
				b.WriteString("\n" + strings.Repeat(" ", indent))
				col = indent
			} else {
				b.WriteByte(' ')
				col++
			}
		}
		b.WriteString(f)
		col += len(f)
	}
	return b.String()
}

// splitSynopsis splits a synopsis at spaces outside brackets, so that
// "[-m M -n N]" stays one item.
func splitSynopsis(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range s {
		switch {
		case r == '[':
			depth++
		case r == ']':
			depth--
		case r == ' ' && depth == 0:
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// run is main without os.Exit, so tests can drive the command in-process.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && args[0] == "help" {
			if c, ok := findCommand(args[1]); ok {
				// The command's flags, on stdout: asked for, not an error.
				return exitCode(c.run([]string{"-h"}, stdout, stdout), c.name, stderr)
			}
			fmt.Fprintf(stderr, "lorabench help: unknown command %q\n\n", args[1])
			usage(stderr)
			return exitUsage
		}
		usage(stdout)
		return exitOK
	}
	if c, ok := findCommand(args[0]); ok {
		return exitCode(c.run(args[1:], stdout, stderr), c.name, stderr)
	}
	fmt.Fprintf(stderr, "lorabench: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func findCommand(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
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
