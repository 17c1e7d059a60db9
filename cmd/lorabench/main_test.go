package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/vk"
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
				"-form", form, "-reps", "3", "-warmup", "1")
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
	code, out, _ := runCmd(t, "matmul", "-sizes", "16,40", "-dtype", "f32,bf16", "-reps", "3", "-warmup", "0", "-json")
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
		{[]string{"bench", "extra"}, exitUsage, "unexpected arguments"},
		{[]string{"devices", "-x"}, exitUsage, "-x"},
		{[]string{"check"}, exitUsage, "name at least one"},
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
	if code != exitOK || !strings.Contains(out, "matmul") || !strings.Contains(out, "bench") {
		t.Errorf("help: exit %d, %q", code, out)
	}
	code, _, stderr := runCmd(t, "matmul", "-h")
	if code != exitOK || !strings.Contains(stderr, "-dtype") {
		t.Errorf("matmul -h: exit %d, %q", code, stderr)
	}
}

// TestValidationFailureIsNotTimed feeds runCases a case whose output is
// wrong on purpose: it must be reported, not timed, and exit 3.
func TestValidationFailureIsNotTimed(t *testing.T) {
	needGPU(t)
	bad := matmulCase(8, 8, 8, dtype.F32, "nt")
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
	err := runCases([]benchCase{bad, matmulCase(8, 8, 8, dtype.F32, "nt")}, &runFlags{reps: 2, warmup: 0, seed: 1}, &out, &errb)
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
	needGPU(t)
	dev, err := vk.Open(vk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := dev.Release(); err != nil {
			t.Error(err)
		}
	}()
	eng, err := lora.NewEngine(dev)
	if err != nil {
		t.Fatal(err)
	}
	r, err := matmulCase(4, 4, 4, dtype.F16, "tn").Setup(eng, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	rec, err := dev.NewRecorder()
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	reps := 2*maxTimedPerSubmit + 7
	st, err := timeGPU(rec, dev, 3, reps, r.Record)
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
