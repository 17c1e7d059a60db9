package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// The tests run the commands in-process on the default Vulkan device
// (lavapipe in CI). Every command opens and releases its own device and
// fails (exit 1) when vk's Device.Release reports leaked objects, so a zero
// exit status also proves nothing leaked.

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	t.Logf("lorabench %s → %d\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

func needGPU(t *testing.T) {
	t.Helper()
	if os.Getenv("VKLORA_SKIP_GPU") == "1" && os.Getenv("CI") != "true" {
		t.Skip("VKLORA_SKIP_GPU=1")
	}
}

// openEngine opens the default device for one test; its Release at the
// test's end must report no leaked objects.
// openCase opens a device and sets c up on it with inputs drawn from seed
// (a, b), with a recorder; all three are released when the test ends.
func openCase(t *testing.T, c benchCase, a, b uint64) (*vk.Device, *benchRun, *vk.Recorder) {
	t.Helper()
	dev, eng := openEngine(t)
	r, err := c.Setup(eng, rand.New(rand.NewPCG(a, b)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Release)
	return dev, r, vktest.Recorder(t, dev)
}

func openEngine(t *testing.T) (*vk.Device, *lora.Engine) {
	t.Helper()
	needGPU(t)
	dev, err := vk.Open(vk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := dev.Release(); err != nil {
			t.Error(err)
		}
	})
	eng, err := lora.NewEngine(dev, lora.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return dev, eng
}

func TestDevices(t *testing.T) {
	needGPU(t)
	code, out, _ := runCmd(t, "devices")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(out, "* #") {
		t.Errorf("no device marked as default:\n%s", out)
	}
	code, out, _ = runCmd(t, "devices", "-json")
	if code != exitOK {
		t.Fatalf("-json: exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	defaults := 0
	for _, l := range lines {
		var d deviceJSON
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("bad JSON line %q: %v", l, err)
		}
		if d.Name == "" {
			t.Errorf("device without a name: %q", l)
		}
		if d.Default {
			defaults++
		}
	}
	if len(lines) < 1 || defaults != 1 {
		t.Errorf("%d devices, %d marked default; want ≥ 1 and exactly 1", len(lines), defaults)
	}
}

func TestMatmulEachDType(t *testing.T) {
	needGPU(t)
	for _, form := range []string{"nt", "nn", "tn"} {
		for _, d := range dtype.Floats {
			code, out, _ := runCmd(t, "matmul", "-m", "33", "-n", "17", "-k", "65", "-dtype", d.String(),
				"-form", form, "-reps", "3", "-warmup", "1", "-warmup-ms", "0")
			if code != exitOK {
				t.Fatalf("%s %s: exit %d", d, form, code)
			}
			row := fmt.Sprintf("matmul  %-5s %-4s %6d %6d %6d", d, form, 33, 17, 65)
			if !strings.Contains(out, row) || !strings.Contains(out, "device: ") {
				t.Errorf("%s %s: no row %q in\n%s", d, form, row, out)
			}
		}
	}
}

func TestMatmulJSON(t *testing.T) {
	needGPU(t)
	code, out, _ := runCmd(t, "matmul", "-sizes", "16,40", "-dtype", "f32,bf16", "-reps", "3", "-warmup", "0", "-warmup-ms", "0", "-json")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d JSON lines, want 4 (2 sizes × 2 dtypes)", len(lines))
	}
	for _, l := range lines {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("bad JSON line %q: %v", l, err)
		}
		for _, f := range []string{"op", "device", "dtype", "form", "M", "N", "K", "ms_median", "ms_min", "ms_max", "gflops", "rel_err", "validated"} {
			if _, ok := r[f]; !ok {
				t.Errorf("field %q missing from %s", f, l)
			}
		}
		if r["validated"] != true || !(r["ms_median"].(float64) > 0) || r["M"] != r["K"] {
			t.Errorf("unexpected result %s", l)
		}
		if !(r["ms_min"].(float64) <= r["ms_median"].(float64) && r["ms_median"].(float64) <= r["ms_max"].(float64)) {
			t.Errorf("min ≤ median ≤ max violated: %s", l)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string // in stderr
	}{
		{nil, exitUsage, "usage: lorabench"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"matmul", "-bogus"}, exitUsage, "-bogus"},
		{[]string{"matmul", "-m", "x"}, exitUsage, "-m"},
		{[]string{"matmul", "-m", "0"}, exitUsage, "-m must be ≥ 1"},
		{[]string{"matmul", "-k", "-3"}, exitUsage, "-k must be ≥ 1"},
		{[]string{"matmul", "-sizes", "8,0"}, exitUsage, "-sizes"},
		{[]string{"matmul", "-sizes", "8", "-m", "4"}, exitUsage, "alternatives"},
		{[]string{"matmul", "-dtype", "u8"}, exitUsage, "-dtype"},
		{[]string{"matmul", "-form", "tt"}, exitUsage, "-form"},
		{[]string{"matmul", "-reps", "0"}, exitUsage, "-reps"},
		{[]string{"matmul", "-sweep", "VKLORA_BOGUS=1"}, exitUsage, "VKLORA_COOPMAT2_TILE"},
		{[]string{"matmul", "-sweep", "VKLORA_DISABLE_NARROW"}, exitUsage, "NAME=V1;V2"},
		{[]string{"matmul", "-sweep", "VKLORA_DISABLE_NARROW=0;;1"}, exitUsage, "empty value"},
		{[]string{"matmul", "-sweep", "VKLORA_COOPMAT2_TILE=128,128,32"}, exitUsage, "VKLORA_COOPMAT2_TILE"},
		{[]string{"bench", "extra"}, exitUsage, "unexpected arguments"},
		{[]string{"devices", "-x"}, exitUsage, "-x"},
		{[]string{"check"}, exitUsage, "name at least one"},
		{[]string{"check", "-bogus"}, exitUsage, "-bogus"},
		{[]string{"check", "no-such-dir/"}, exitError, "no-such-dir"},
	} {
		code, _, stderr := runCmd(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("lorabench %v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

func TestHelp(t *testing.T) {
	code, out, _ := runCmd(t, "help")
	if code != exitOK {
		t.Errorf("help: exit %d", code)
	}
	for _, c := range commands() {
		if !strings.Contains(out, "\n  "+c.name+" ") {
			t.Errorf("help does not list %s", c.name)
		}
	}
	for _, s := range []string{"2 usage error (bad command line) only", "3 validation failure", "SIGABRT", "VKLORA_DEVICE", "VKLORA_VALIDATION=1"} {
		if !strings.Contains(out, s) {
			t.Errorf("help does not say %q", s)
		}
	}
	if strings.Contains(out, "not yet implemented") {
		t.Errorf("help still calls a command not implemented:\n%s", out)
	}
	code, _, stderr := runCmd(t, "matmul", "-h")
	if code != exitOK || !strings.Contains(stderr, "-dtype") {
		t.Errorf("matmul -h: exit %d, %q", code, stderr)
	}
	// Every command's flags are described, and its synopsis names them.
	for _, c := range commands() {
		code, out, _ := runCmd(t, "help", c.name)
		if code != exitOK || !strings.HasPrefix(out, "usage: lorabench "+c.name) {
			t.Errorf("help %s: exit %d, %q", c.name, code, out)
			continue
		}
		ls := strings.Split(out, "\n")
		for i, l := range ls {
			if !strings.HasPrefix(l, "  -") {
				continue
			}
			name := strings.Fields(l)[0]
			if i+1 >= len(ls) || strings.TrimSpace(ls[i+1]) == "" {
				t.Errorf("%s %s: no description", c.name, name)
			}
			if !strings.Contains(c.args, "["+name+" ") && !strings.Contains(c.args, "["+name+"]") && !strings.Contains(c.args, "["+name+"=") &&
				!strings.Contains(c.args, " "+name+" ") && !strings.Contains(c.args, "| "+name+" ") {
				t.Errorf("%s: synopsis %q does not name %s", c.name, c.args, name)
			}
		}
	}
	if code, _, _ := runCmd(t, "help", "frobnicate"); code != exitUsage {
		t.Errorf("help frobnicate: exit %d, want %d", code, exitUsage)
	}
}

// TestCrashIsNotUsageExit: a Go runtime crash (a panic, running out of
// memory) must not exit 2, the usage-error status: crashMode makes it abort
// with SIGABRT. The test binary runs itself as the crashing child.
func TestCrashIsNotUsageExit(t *testing.T) {
	if how := os.Getenv("LORABENCH_CRASH_CHILD"); how != "" {
		syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{}) //nolint:errcheck // no core file, if allowed
		crashMode()
		switch how {
		case "panic":
			go func() { panic("deliberate crash") }()
			time.Sleep(time.Minute)
		case "oom":
			crashSink = make([]byte, 1<<46) // 64 TiB: fatal error: runtime: out of memory
		}
		os.Exit(0)
	}
	for _, how := range []string{"panic", "oom"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashIsNotUsageExit$", "-test.count=1")
		cmd.Env = append(os.Environ(), "LORABENCH_CRASH_CHILD="+how)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Errorf("%s: the child did not fail: %v\n%s", how, err, out)
			continue
		}
		ws, _ := ee.Sys().(syscall.WaitStatus)
		if ee.ExitCode() == exitUsage || !ws.Signaled() || ws.Signal() != syscall.SIGABRT {
			t.Errorf("%s: %v (code %d), want SIGABRT, never %d:\n%.2000s", how, ee, ee.ExitCode(), exitUsage, out)
		}
	}
}

var crashSink []byte

// TestExitCodes: 2 only for a bad command line; a runtime error exits 1.
func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"help"}, exitOK},
		{[]string{"matmul", "-h"}, exitOK},
		{[]string{"bench", "-quick", "-bogus"}, exitUsage},
		{[]string{"check", "-bogus"}, exitUsage},
		{[]string{"devices", "extra"}, exitUsage},
		{[]string{"check", "/no/such/file.safetensors"}, exitError},
	} {
		if code, _, _ := runCmd(t, tc.args...); code != tc.code {
			t.Errorf("lorabench %v: exit %d, want %d", tc.args, code, tc.code)
		}
	}
	needGPU(t)
	code, _, stderr := runCmd(t, "matmul", "-m", "8", "-n", "8", "-k", "8", "-device", "no-such-device-xyz")
	if code != exitError || strings.Count(stderr, "no-such-device-xyz") < 1 {
		t.Errorf("unknown device: exit %d, want %d", code, exitError)
	}
}

// TestValidationFailureIsNotTimed feeds runCases a case whose output is
// wrong on purpose: it must be reported, not timed, and exit 3.
func TestValidationFailureIsNotTimed(t *testing.T) {
	needGPU(t)
	bad := matmulCase(8, 8, 8, dtype.F32, "nt", denseWeights)
	setup := bad.Setup
	bad.Setup = func(eng *lora.Engine, rng *rand.Rand) (*benchRun, error) {
		r, err := setup(eng, rng)
		if err != nil {
			return nil, err
		}
		r.Record = func(rec *vk.Recorder) error { return nil } // never writes C
		return r, nil
	}
	var out, errb bytes.Buffer
	err := runCases([]benchCase{bad, matmulCase(8, 8, 8, dtype.F32, "nt", denseWeights)}, &runFlags{reps: 2, warmup: 0, seed: 1}, &out, &errb)
	t.Logf("stdout:\n%sstderr:\n%s", out.String(), errb.String())
	if code := exitCode(err, "bench", &errb); code != exitValidate {
		t.Fatalf("exit %d (%v), want %d", code, err, exitValidate)
	}
	if !strings.Contains(out.String(), "FAILED") || !strings.Contains(errb.String(), "not timed") {
		t.Errorf("failure not reported")
	}
	if strings.Count(out.String(), "\nmatmul") != 2 {
		t.Errorf("want one FAILED and one timed row")
	}
}

func TestSummarize(t *testing.T) {
	s := summarize([]float64{3, 1, 2, 10})
	if s.Median != 2.5 || s.Min != 1 || s.Max != 10 || s.Reps != 4 {
		t.Errorf("summarize: %+v", s)
	}
	if s := summarize([]float64{5, 1, 3}); s.Median != 3 {
		t.Errorf("odd median: %+v", s)
	}
}

func TestSampleRows(t *testing.T) {
	r := sampleRows(4096, 64)
	if len(r) != 64 || r[0] != 0 || r[63] != 4095 {
		t.Errorf("sampleRows(4096, 64) = %v", r)
	}
	if r := sampleRows(5, 64); len(r) != 5 || r[4] != 4 {
		t.Errorf("sampleRows(5, 64) = %v", r)
	}
}

// TestTimeGPUChunks times more repeats than one submission's timestamps
// allow, so timeGPU must split them.
func TestTimeGPUChunks(t *testing.T) {
	dev, r, rec := openCase(t, matmulCase(4, 4, 4, dtype.F16, "tn", denseWeights), 1, 2)
	reps := 2*maxTimedPerSubmit + 7
	st, err := timeGPU(rec, dev, warm{Runs: 3}, reps, r.Record)
	if err != nil {
		t.Fatal(err)
	}
	if st.Reps != reps || !(st.Min > 0 && st.Min <= st.Median && st.Median <= st.Max) {
		t.Errorf("stats %+v", st)
	}
	if relErr, tol, detail, err := r.Validate(); err != nil || !(relErr <= tol) {
		t.Errorf("after timing: rel err %g (tol %g) %s %v", relErr, tol, detail, err)
	}
}

func TestCheckSmallSuite(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"check", "../../testdata/small"}, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "13 files, 0 tensors failed") || !strings.Contains(out.String(), "grad.gate.lora_A") {
		t.Fatalf("check exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
}

// benchRows runs `lorabench bench args...` with -json and decodes its rows.
func benchRows(t *testing.T, args ...string) []result {
	t.Helper()
	code, out, _ := runCmd(t, append([]string{"bench", "-json"}, args...)...)
	if code != exitOK {
		t.Fatalf("bench %v: exit %d", args, code)
	}
	var rows []result
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r result
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("bad JSON line %q: %v", l, err)
		}
		rows = append(rows, r)
	}
	return rows
}

func TestBenchQuickMLP(t *testing.T) {
	needGPU(t)
	rows := benchRows(t, "-quick", "-op", "mlp", "-dtype", "f32", "-reps", "3", "-warmup", "1", "-warmup-ms", "0")
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2 (fwd, fwdbwd)", len(rows))
	}
	s := quickShape
	for i, pass := range []string{passFwd, passFwdBwd} {
		r := rows[i]
		if r.Op != "mlp" || r.Pass != pass || r.DType != "f32" || r.Preset != "quick" || r.M != s.M || r.Hidden != s.H || r.Inter != s.I || r.R != s.R || r.Act != "swiglu" {
			t.Errorf("row %d: %+v, want mlp quick %s f32", i, r, pass)
		}
		if !r.Validated || !(float64(r.RelErr) <= r.Tol) || r.Tol != ref.Tolerance(dtype.F32).Layer {
			t.Errorf("%s: not validated: %+v", pass, r)
		}
		if !(r.PeakExtraMiB > 0) || !(r.MsMedian > 0) || !(r.TFLOPs > 0) {
			t.Errorf("%s: peak_extra_MiB %g, ms %g, TFLOP/s %g; want > 0", pass, r.PeakExtraMiB, r.MsMedian, r.TFLOPs)
		}
		// layerFLOPs: fwd 2·M·in·out + 2·M·r·(in+out) per projection, bwd
		// 2·M·in·out + 4·M·r·(in+out); gate and up [I,H], down [H,I].
		mm := 2.0 * float64(s.M*s.H*s.I)
		lr := 2.0 * float64(s.M*s.R*(s.H+s.I))
		want := 3 * (mm + lr)
		if pass == passFwdBwd {
			want += 3 * (mm + 2*lr)
		}
		if r.FLOPs != want {
			t.Errorf("%s: %g FLOP, want %g", pass, r.FLOPs, want)
		}
	}
	if !(rows[1].PeakExtraMiB > rows[0].PeakExtraMiB) {
		t.Errorf("fwd+bwd peak %g MiB not above fwd %g MiB", rows[1].PeakExtraMiB, rows[0].PeakExtraMiB)
	}
}

func TestBenchCustomQKV(t *testing.T) {
	needGPU(t)
	rows := benchRows(t, "-op", "qkv", "-m", "17", "-hidden", "40", "-q", "48", "-kv", "16", "-r", "3", "-reps", "2", "-warmup", "0", "-warmup-ms", "0")
	if len(rows) != 4 {
		t.Fatalf("%d rows, want 4 (f32, bf16 × fwd, fwdbwd)", len(rows))
	}
	for _, r := range rows {
		if r.Op != "qkv" || r.Preset != "custom" || r.M != 17 || r.N != 48+2*16 || r.K != 40 || r.Q != 48 || r.KV != 16 || r.R != 3 {
			t.Errorf("unexpected row %+v", r)
		}
		if !r.Validated || !(r.PeakExtraMiB > 0) {
			t.Errorf("not validated or no peak: %+v", r)
		}
	}
	// Text mode: the form and peak MiB columns.
	code, out, _ := runCmd(t, "bench", "-op", "o,matmul_lora", "-m", "9", "-hidden", "24", "-r", "2", "-dtype", "f16", "-reps", "2", "-warmup", "0", "-warmup-ms", "0")
	if code != exitOK || !strings.Contains(out, "peak MiB") || !strings.Contains(out, "custom fwdbwd") ||
		strings.Count(out, "\no ") != 2 || strings.Count(out, "\nmatmul_lora ") != 1 {
		t.Errorf("exit %d; want o fwd, o fwdbwd and matmul_lora fwd rows with a peak MiB column:\n%s", code, out)
	}
}

// TestBenchLayerValidation breaks one adapter gradient (dB of the last
// projection) of a layer op: the case must fail validation, not be timed.
func TestBenchLayerValidation(t *testing.T) {
	needGPU(t)
	op := mlpLastOutputZeroed()
	s := quickShape
	s.M = 100 // validated on a 64-row slice
	out, errb := runFailingValidation(t, layerCase(op, s, dtype.F32, passFwdBwd, denseWeights, 64), 2)
	if !strings.Contains(out.String(), "FAILED") || !strings.Contains(errb.String(), "dB_down") ||
		!strings.Contains(errb.String(), "first 64 of 100 rows") {
		t.Errorf("failure of dB_down not reported")
	}
}

// mlpLastOutputZeroed is the MLP layer op with its last output (the down
// projection's last gradient in a fwdbwd case) zeroed after the step, a
// result validation must catch.
func mlpLastOutputZeroed() *layerOp {
	op := *layerOps["mlp"]
	gpu := op.gpu
	op.gpu = func(eng *lora.Engine, rec *vk.Recorder, ps []*lora.Projection, act ref.Activation, x *vk.Tensor, gys []*vk.Tensor, bwd bool) ([]*vk.Tensor, []vk.Releaser, error) {
		outs, saved, err := gpu(eng, rec, ps, act, x, gys, bwd)
		if err == nil {
			rec.Barrier()
			err = rec.Fill(outs[len(outs)-1].Binding(), 0)
		}
		return outs, saved, err
	}
	return &op
}

// runFailingValidation runs c with reps repeats and requires the exit code
// of a validation failure; it returns stdout and stderr.
func runFailingValidation(t *testing.T, c benchCase, reps int) (stdout, stderr *bytes.Buffer) {
	t.Helper()
	var out, errb bytes.Buffer
	err := runCases([]benchCase{c}, &runFlags{reps: reps, seed: 1}, &out, &errb)
	t.Logf("stdout:\n%sstderr:\n%s", out.String(), errb.String())
	if code := exitCode(err, "bench", &errb); code != exitValidate {
		t.Fatalf("exit %d (%v), want %d", code, err, exitValidate)
	}
	return &out, &errb
}

// TestTimeGPUChunksHolds times a layer step whose outputs the recorder
// holds, a few steps per submission: all of them are freed.
func TestTimeGPUChunksHolds(t *testing.T) {
	dev, r, rec := openCase(t, layerCase(layerOps["o"], quickShape, dtype.BF16, passFwdBwd, denseWeights, 64), 1, 3)
	before, _ := dev.MemoryStats()
	st, err := timeGPUChunks(rec, dev, warm{Runs: 2}, 7, 3, r.Record, nil)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := dev.MemoryStats()
	if st.Reps != 7 || after != before {
		t.Errorf("%d reps, memory %d → %d bytes; want 7 reps and nothing left", st.Reps, before, after)
	}
	if n := stepsPerSubmit(dev, 0, 0); n != maxTimedPerSubmit {
		t.Errorf("stepsPerSubmit without extra memory = %d", n)
	}
	if n := stepsPerSubmit(dev, 0, 1<<62); n != 1 {
		t.Errorf("stepsPerSubmit of a huge step = %d, want 1", n)
	}
}

// TestWarmUpByGPUTime: a warm-up bounded by GPU time runs the op until that
// much GPU time has passed, however few runs were asked for; a bound by
// runs alone runs exactly that many.
func TestWarmUpByGPUTime(t *testing.T) {
	_, r, rec := openCase(t, matmulCase(16, 16, 16, dtype.F32, "nt", denseWeights), 1, 4)
	count := func(w warm) int {
		n := 0
		if _, err := warmUp(rec, w, 50, func(rec *vk.Recorder) error { n++; return r.Record(rec) }, nil); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(warm{Runs: 3}); n != 3 {
		t.Errorf("warm-up of 3 runs recorded %d", n)
	}
	// A 16³ matmul takes microseconds: 20 ms of GPU time needs many runs.
	if n := count(warm{Runs: 1, GPU: 20 * time.Millisecond}); n < 4 {
		t.Errorf("warm-up of 20 ms GPU time recorded only %d runs", n)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-preset", "llama3-8b,llama9-x"}, `-preset "llama9-x": unknown preset`},
		{[]string{"-preset", "gemma-2b", "-quick"}, "alternatives"},
		{[]string{"-preset", "gemma-2b", "-hidden", "64"}, "alternatives"},
		{[]string{"-op", "attention"}, `-op "attention"`},
		{[]string{"-pass", "bwd"}, "-pass"},
		{[]string{"-dtype", "f64"}, "-dtype"},
		{[]string{"-act", "relu"}, "-act"},
		{[]string{"-hidden", "0"}, "-hidden must be ≥ 1"},
		{[]string{"-op", "matmul_lora", "-pass", "fwdbwd", "-quick"}, "no backward"},
		// PEFT's extensions: a dropout probability outside [0, 1) or not a
		// number, and DoRA with a lora_B bias, which PEFT refuses.
		{[]string{"-dropout", "1"}, "-dropout 1: want a probability in [0, 1)"},
		{[]string{"-dropout", "-0.1"}, "-dropout -0.1: want a probability in [0, 1)"},
		{[]string{"-dropout", "NaN"}, "-dropout NaN: want a probability in [0, 1)"},
		{[]string{"-dropout", "+Inf"}, "-dropout +Inf: want a probability in [0, 1)"},
		{[]string{"-dropout", "half"}, "-dropout"},
		{[]string{"-dora", "-lora-bias"}, "-dora and -lora-bias are exclusive"},
		{[]string{"-quick", "-lora-bias", "-dropout", "0.5", "-dora"}, "PEFT refuses use_dora with lora_bias"},
	} {
		code, _, stderr := runCmd(t, append([]string{"bench"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("bench %v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
}

// TestBenchProfile: -profile lists the step's dispatches on stderr and
// leaves stdout (here JSON) as it is.
func TestBenchProfile(t *testing.T) {
	needGPU(t)
	code, out, stderr := runCmd(t, "bench", "-quick", "-op", "mlp", "-pass", "fwd", "-dtype", "f32", "-reps", "1",
		"-warmup", "0", "-warmup-ms", "0", "-json", "-profile")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "profile mlp f32 quick fwd") || !strings.Contains(stderr, "swiglu_f32") {
		t.Errorf("stderr has no profile of the MLP step:\n%s", stderr)
	}
	var r result
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &r); err != nil || !r.Validated {
		t.Errorf("stdout is not one validated JSON result (%v):\n%s", err, out)
	}
}

// TestBenchKeepSavedMLP: -keep-saved runs the MLP as mlp_keep_saved,
// validated like mlp, and its step allocates exactly the two [M, I]
// tensors (de, dg) more that mlp's default in-place backward writes over
// the saved e and g.
func TestBenchKeepSavedMLP(t *testing.T) {
	needGPU(t)
	args := []string{"-op", "mlp", "-m", "24", "-hidden", "40", "-inter", "72", "-r", "3", "-dtype", "bf16",
		"-pass", "fwdbwd", "-reps", "1", "-warmup", "0", "-warmup-ms", "0"}
	plain := benchRows(t, args...)
	keep := benchRows(t, append(args, "-keep-saved")...)
	if len(plain) != 1 || len(keep) != 1 {
		t.Fatalf("%d and %d rows, want 1 each", len(plain), len(keep))
	}
	p, q := plain[0], keep[0]
	if p.Op != "mlp" || q.Op != "mlp_keep_saved" || !p.Validated || !q.Validated || q.Inter != 72 || q.Act == "" {
		t.Fatalf("rows %+v / %+v", p, q)
	}
	want := 2 * 24 * 72 * 2 / float64(1<<20)
	if d := q.PeakExtraMiB - p.PeakExtraMiB; math.Abs(d-want) > 1e-9 {
		t.Errorf("keep-saved step allocates %.6f MiB more than the in-place one, want %.6f", d, want)
	}
}

// -sweep times every case once per value, on one set-up: a row per case
// and value, the value in the form and in JSON, every row validated (the
// rank-sized product runs the narrow kernel under 0 and the tiled one
// under 1), and the layer ops of bench sweep too.
func TestSweep(t *testing.T) {
	needGPU(t)
	code, out, errb := runCmd(t, "matmul", "-m", "300", "-n", "16", "-k", "520", "-dtype", "f32", "-reps", "2",
		"-warmup", "0", "-warmup-ms", "0", "-no-peak", "-json", "-profile", "-sweep", "VKLORA_DISABLE_NARROW=0;1")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d JSON lines, want 2 (one case × 2 values):\n%s", len(lines), out)
	}
	for i, want := range []string{"0", "1"} {
		var r result
		if err := json.Unmarshal([]byte(lines[i]), &r); err != nil {
			t.Fatal(err)
		}
		if r.Sweep != "VKLORA_DISABLE_NARROW="+want || r.Form != "nt ["+want+"]" || !r.Validated {
			t.Errorf("row %d: sweep %q, form %q, validated %v", i, r.Sweep, r.Form, r.Validated)
		}
	}
	if !strings.Contains(errb, "2 cases: 2 ran") {
		t.Errorf("summary: %s", errb)
	}
	// Each value's engine ran its row: the profiles name the kernels.
	on, off, ok := strings.Cut(errb, "[VKLORA_DISABLE_NARROW=1]")
	if !ok || !strings.Contains(on, "[VKLORA_DISABLE_NARROW=0]") || !strings.Contains(on, "_narrow") || strings.Contains(off, "_narrow") {
		t.Errorf("profiles: the narrow kernel should run under 0 only:\n%s", errb)
	}
	code, out, _ = runCmd(t, "bench", "-quick", "-op", "o", "-pass", "fwd", "-reps", "1", "-warmup", "0", "-warmup-ms", "0",
		"-no-peak", "-sweep", "VKLORA_DISABLE_NARROW=1;0")
	if code != exitOK || !strings.Contains(out, "quick fwd [1]") || !strings.Contains(out, "quick fwd [0]") {
		t.Errorf("bench -sweep: exit %d:\n%s", code, out)
	}
}

// prepareCase builds every kernel a case needs, its validation's included
// (which runs on the first val-rows rows, so other tiles), so that
// measuring it afterwards builds none.
func TestPrepareCaseBuildsEverything(t *testing.T) {
	dev, eng := openEngine(t)
	s := shape{Name: "custom", M: 1000, H: 96, I: 160, Q: 96, KV: 32, R: 6, Act: ref.SwiGLU}
	c := layerCaseExt(layerOps["mlp"], s, dtype.BF16, passFwdBwd, denseWeights, 16, layerExt{Dropout: 0.1})
	r, err := c.Setup(eng, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	if err := prepareCase(dev, r, []variant{{eng: eng}}, nil); err != nil {
		t.Fatal(err)
	}
	prepared := dev.KernelBuilds()
	res := newResult(c, dev.Info())
	if err := measureCase(eng, vktest.Recorder(t, dev), r, c, &res, &runFlags{reps: 1, seed: 1}, nil); err != nil {
		t.Fatal(err)
	}
	if got := dev.KernelBuilds(); got.Kernels != prepared.Kernels {
		t.Errorf("measuring the case built %d kernels after prepareCase", got.Kernels-prepared.Kernels)
	}
	if !res.Validated {
		t.Errorf("the case was not validated")
	}
}
