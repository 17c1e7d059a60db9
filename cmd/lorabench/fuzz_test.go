package main

import (
	"errors"
	"io"
	"math"
	"math/bits"
	"strings"
	"testing"

	"github.com/vklora/vklora/quant"
)

// casesOf parses a bench (or matmul) command line as the command does and
// returns the cases and run flags it would hand to runCases, or the
// command's error; no device is opened.
func casesOf(matmul bool, args []string) (cases []benchCase, o *runFlags, err error) {
	saved := runSelected
	defer func() { runSelected = saved }()
	calls := 0
	runSelected = func(cs []benchCase, ro *runFlags, _, _ io.Writer) error {
		calls++
		cases, o = cs, ro
		return nil
	}
	cmd := cmdBench
	if matmul {
		cmd = cmdMatmul
	}
	err = cmd(args, io.Discard, io.Discard)
	if err == nil && calls != 1 {
		return nil, nil, errors.New("the command returned no error without running its cases")
	}
	if err != nil && calls != 0 {
		return nil, nil, errors.New("the command ran its cases and then returned an error: " + err.Error())
	}
	return cases, o, err
}

// FuzzCommandLine parses fuzzed bench and matmul command lines (arguments
// separated by single spaces, so that an empty argument is two spaces) into
// cases, without a device. No command line may panic; each is either a
// usage error (exit 2), -h (exit 0), or cases whose dimensions, dtypes,
// weight formats and sizes are within the limits runCases relies on, with
// run flags within theirs. The resize hints of each case build cases too
// (at 1), which must be as well-formed.
func FuzzCommandLine(f *testing.F) {
	for _, s := range []struct {
		matmul bool
		line   string
	}{
		{false, ""},
		{false, "-quick"},
		{false, "-quick -op mlp,qkv -pass fwd -json"},
		{false, "-preset llama3-8b,gemma-2b -m 64 -r 4 -dtype f16"},
		{false, "-m 1 -hidden 2147483647 -inter 1 -q 1 -kv 1 -r 1"},
		{false, "-hidden 0"},
		{false, "-hidden 2147483648"},
		{false, "-op nosuch"},
		{false, "-op  -quick"},
		{false, "-dtype f16,bf16 -weight dense,nf4 -blocksize 32 -double-quant=false"},
		{false, "-weight nf4 -blocksize 3"},
		{false, "-blocksize 64"},
		{false, "-pass fwdbwd -op matmul_lora"},
		{false, "-pass both -op mlp -keep-saved -act geglu_tanh -hidden 7 -inter 9"},
		{false, "-act relu"},
		{false, "-h"},
		{false, "-reps 0"},
		{false, "-warmup-ms 3600001"},
		{false, "-plot out.txt"},
		{false, "-plot-metric watts"},
		{false, "-q -1"},
		{false, "-m 99999999999999999999"},
		{false, "-val-rows 0"},
		{false, "-preset llama3-8b -quick"},
		{false, "-preset qwen2.5-0.5b -hidden 64"},
		{false, "-dtype u8"},
		{false, "-quick extra"},
		{true, "-m 3 -n 5 -k 7"},
		{true, "-sizes 1,2,3 -dtype f16,bf16 -form tn"},
		{true, "-sizes 0"},
		{true, "-sizes 4 -m 4"},
		{true, "-sizes ,"},
		{true, "-form tt"},
		{true, "-k 2147483648"},
		{true, "-m -5"},
		{true, "-weight nf4 -blocksize 4096 -m 64 -n 64 -k 64"},
		{true, "-weight dense,nf4,dense -dtype bf16"},
		{true, "-dtype f32,,f16"},
		{true, "-seed 18446744073709551615 -reps 1000000 -warmup 0"},
	} {
		f.Add(s.matmul, s.line)
	}
	f.Fuzz(func(t *testing.T, matmul bool, line string) {
		var args []string
		if line != "" {
			args = strings.Split(line, " ")
		}
		cases, o, err := casesOf(matmul, args)
		if err != nil {
			var ue *usageError
			if !errors.As(err, &ue) && !errors.Is(err, errHelp) {
				t.Fatalf("%q: an error that is neither a usage error nor -h: %v", line, err)
			}
			if code := exitCode(err, "bench", io.Discard); code != exitUsage && code != exitOK {
				t.Fatalf("%q: exit %d for %v", line, code, err)
			}
			return
		}
		if len(cases) == 0 {
			t.Fatalf("%q: no cases and no usage error", line)
		}
		checkRunFlags(t, line, o)
		for _, c := range cases {
			checkCase(t, line, c)
			for _, r := range c.Smaller {
				checkCase(t, line+" (hint "+r.flag+")", r.with(1))
			}
		}
	})
}

func checkRunFlags(t *testing.T, line string, o *runFlags) {
	t.Helper()
	if o.reps < 1 || o.reps > maxReps || o.warmup < 0 || o.warmup > maxWarmup || o.warmupMs < 0 || o.warmupMs > maxWarmupMs {
		t.Fatalf("%q: run flags out of bounds: -reps %d -warmup %d -warmup-ms %d", line, o.reps, o.warmup, o.warmupMs)
	}
	if _, ok := plotMetrics[o.plotMetric]; !ok {
		t.Fatalf("%q: -plot-metric %q accepted", line, o.plotMetric)
	}
}

// checkCase fails unless c is a case runCases can take: every dimension in
// [1, maxDim], a float dtype, a valid NF4 block size, finite positive
// counts, and a setup.
func checkCase(t *testing.T, line string, c benchCase) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%q: case %s: "+format, append([]any{line, c}, args...)...)
	}
	dims := map[string]int{"M": c.M, "N": c.N, "K": c.K}
	if c.Layer != nil {
		s := c.Layer.Shape
		for k, v := range map[string]int{"shape M": s.M, "H": s.H, "I": s.I, "Q": s.Q, "KV": s.KV, "R": s.R} {
			dims[k] = v
		}
		if c.Layer.Pass != passFwd && c.Layer.Pass != passFwdBwd {
			fail("pass %q", c.Layer.Pass)
		}
	}
	for k, v := range dims {
		if v < 1 || v > maxDim {
			fail("%s = %d outside [1, %d]", k, v, maxDim)
		}
	}
	if !c.DType.IsFloat() {
		fail("dtype %s is not a float dtype", c.DType)
	}
	if w := c.Weight; w.NF4 && (w.Blocksize < quant.MinBlocksize || w.Blocksize > quant.MaxBlocksize || bits.OnesCount(uint(w.Blocksize)) != 1) {
		fail("NF4 block size %d", w.Blocksize)
	}
	finite := func(what string, v float64, positive bool) {
		t.Helper()
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || (positive && v == 0) {
			fail("%s = %v", what, v)
		}
	}
	finite("FLOPs", c.FLOPs, true)
	finite("Bytes", c.Bytes, true)
	finite("WeightBytes", c.WeightBytes, false)
	finite("device bytes needed", c.Need.device, true)
	finite("host bytes needed", c.Need.host, false)
	for _, b := range c.Need.bufs {
		finite("buffer "+b.what, b.bytes, false)
	}
	for _, p := range c.Need.products {
		finite("product rows", p[0], true)
		finite("product cols", p[1], true)
	}
	if c.Setup == nil || c.Op == "" {
		fail("no op or setup")
	}
}
