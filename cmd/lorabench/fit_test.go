package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/vk"
)

// Device and host limits (fit.go): cases that cannot fit are skipped with a
// reason and a hint before they allocate anything, and the sweep goes on.

// smallDevice is lavapipe-like: 128 MiB per binding, 2 GiB of memory.
var smallDevice = limits{binding: 128 << 20, bindingName: "maxStorageBufferRange", heap: 2 << 30,
	groups: [3]float64{65535, 65535, 65535}, host: 8 << 30}

func TestFitReasons(t *testing.T) {
	bf16 := dtype.BF16
	// llama3-8b's up projection: C [8192, 14336] bf16 is 224 MiB.
	up := matmulSweep(&selection{mmShapes: true, shapes: presets[:1], dtypes: []dtype.DType{bf16}, weights: []weightFormat{denseWeights}})[0]
	why := up.Need.fit(smallDevice)
	if !strings.Contains(why, "needs 224 MiB in one buffer (C [8192,14336] bf16)") || !strings.Contains(why, "allows 128 MiB per binding") {
		t.Errorf("llama3-8b up on a 128 MiB binding: %q", why)
	}
	if h := hint(up, smallDevice); h != "try -m 4096" {
		t.Errorf("hint %q, want try -m 4096", h)
	}
	if line := skipLine(up, why, hint(up, smallDevice)); !strings.HasPrefix(line, "skip matmul bf16 nt llama3-8b up 8192x14336x4096: needs") ||
		!strings.HasSuffix(line, "; try -m 4096") || strings.Contains(line, "\n") {
		t.Errorf("skip line %q", line)
	}
	big := limits{binding: 1 << 40, heap: 1 << 40, groups: smallDevice.groups, host: 1 << 40}
	if why := up.Need.fit(big); why != "" {
		t.Errorf("fits a big device, but: %q", why)
	}
	// Device memory: the MLP at llama3-8b on a device with 1 GiB.
	mlp := layerCase(layerOps["mlp"], presets[0], bf16, passFwdBwd, denseWeights, 64)
	heap := big
	heap.heap = 1 << 30
	if why := mlp.Need.fit(heap); !strings.Contains(why, "of device memory, device-local memory is 1 GiB") {
		t.Errorf("mlp on 1 GiB: %q", why)
	}
	// Host memory: the same with 1 GiB of host memory allowed, and on a
	// unified device, where the device's memory is host memory too.
	host := big
	host.host = 1 << 30
	if why := mlp.Need.fit(host); !strings.Contains(why, "of host memory") || strings.Contains(why, "device's memory") {
		t.Errorf("mlp with 1 GiB of host memory: %q", why)
	}
	host.host, host.unified = mlp.Need.host*1.01, true
	if why := mlp.Need.fit(host); !strings.Contains(why, "the device's memory, which is host memory here") {
		t.Errorf("mlp on a unified device: %q", why)
	}
	// Workgroup counts: an output of 2^31-1 rows and 64 columns needs
	// 2^24 workgroups along y on any tiled kernel.
	tall := matmulCase(maxDim, 64, 1, dtype.F32, "nt", denseWeights)
	if why := tall.Need.fit(big); !strings.Contains(why, "workgroups") || !strings.Contains(why, "maxComputeWorkGroupCount") {
		t.Errorf("[2^31-1, 64] output: %q", why)
	}
	// The narrow kernel takes 2^24 rows of a 16-column output in 16384
	// workgroups of 1024 (not strict), but no hint may rely on that.
	narrow := matmulCase(1<<24, 16, 1, dtype.F32, "nt", denseWeights)
	if why := narrow.Need.fit(big); why != "" {
		t.Errorf("[2^24, 16] output should fit the narrow kernel's grid: %q", why)
	}
	strict := big
	strict.strict = true
	if why := narrow.Need.fit(strict); !strings.Contains(why, "workgroups") {
		t.Errorf("[2^24, 16] output fits strict limits: %q", why)
	}
}

func TestFitHints(t *testing.T) {
	huge := matmulCase(100000, 100000, 100000, dtype.F32, "nt", denseWeights)
	huge.Smaller = []resize{{"-sizes", 100000, func(v int) benchCase { return matmulCase(v, v, v, dtype.F32, "nt", denseWeights) }, nil}}
	// 4096² f32 is 64 MiB; 8192² is 256 MiB.
	if h := hint(huge, smallDevice); h != "try -sizes 4096" {
		t.Errorf("hint %q, want try -sizes 4096", h)
	}
	// A weight too large dense but not as NF4 (device memory).
	mlp := layerCase(layerOps["mlp"], shape{Name: "x", M: 64, H: 8192, I: 16384, Q: 8192, KV: 1024, R: 8}, dtype.F32, passFwd, denseWeights, 64)
	l := limits{binding: 1 << 40, heap: 1 << 30, groups: smallDevice.groups}
	if why := mlp.Need.fit(l); why == "" {
		t.Fatal("three 512 MiB weights fit in 1 GiB")
	}
	if h := hint(mlp, l); h != "try -weight nf4" {
		t.Errorf("hint %q, want try -weight nf4", h)
	}
	for _, tc := range []struct{ v, want int }{{1, 0}, {2, 1}, {3, 2}, {4, 2}, {5, 4}, {100000, 65536}, {maxDim, 1 << 30}} {
		if got := prevPow2(tc.v); got != tc.want {
			t.Errorf("prevPow2(%d) = %d, want %d", tc.v, got, tc.want)
		}
	}
}

func TestParseMemAvailable(t *testing.T) {
	in := "MemTotal:       24684084 kB\nMemFree:  1 kB\nMemAvailable:   22985816 kB\n"
	if got := parseMemAvailable(bufio.NewScanner(strings.NewReader(in))); got != 22985816*1024 {
		t.Errorf("MemAvailable = %g", got)
	}
	if got := parseMemAvailable(bufio.NewScanner(strings.NewReader("MemTotal: 5 kB\n"))); got != 0 {
		t.Errorf("no MemAvailable line: %g, want 0 (unknown)", got)
	}
}

// TestHugeSizes: dimensions beyond any device are usage errors; huge ones
// within that are skipped before anything is allocated (the Go heap grows
// by far less than the case would need) and the run exits 0.
func TestHugeSizes(t *testing.T) {
	needGPU(t)
	for _, args := range [][]string{
		{"matmul", "-m", "2147483647", "-n", "1", "-k", "1"},
		{"matmul", "-m", "100000", "-n", "100000", "-k", "100000", "-dtype", "bf16"},
		{"matmul", "-sizes", "2147483647", "-weight", "nf4"},
		{"bench", "-op", "mlp", "-m", "2147483647", "-hidden", "2147483647", "-inter", "2147483647", "-r", "2147483647"},
		{"bench", "-op", "qkv,o", "-m", "1000000", "-hidden", "1000000", "-q", "1000000", "-kv", "1000000"},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		code, out, stderr := runCmd(t, args...)
		runtime.ReadMemStats(&after)
		if code != exitOK || !strings.Contains(stderr, "skip ") || !strings.Contains(out, " 0 ran, ") || strings.Contains(out, " 0 skipped") {
			t.Errorf("%v: exit %d; want 0 with every case skipped", args, code)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
			t.Errorf("%v: allocated %d MiB on the host", args, grew>>20)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"matmul", "-m", "2147483648"}, "-m 2147483648: dimensions are at most 2147483647"},
		{[]string{"matmul", "-sizes", "9223372036854775807"}, "-sizes 9223372036854775807: dimensions are at most"},
		{[]string{"bench", "-op", "o", "-hidden", "4294967296"}, "-hidden 4294967296: dimensions are at most"},
		{[]string{"matmul", "-reps", "2147483647"}, "-reps must be in [1, 1000000]"},
		{[]string{"bench", "-warmup-ms", "9223372036854775807"}, "-warmup-ms must be in [0, 3600000]"},
	} {
		if code, _, stderr := runCmd(t, tc.args...); code != exitUsage || strings.Count(stderr, tc.want) != 1 {
			t.Errorf("%v: exit %d; want %d and %q once", tc.args, code, exitUsage, tc.want)
		}
	}
}

// failingCase is a small matmul whose Setup fails with err.
func failingCase(err error) benchCase {
	c := matmulCase(8, 8, 8, dtype.F32, "nt", denseWeights)
	c.Setup = func(*lora.Engine, *rand.Rand) (*benchRun, error) { return nil, err }
	return c
}

// wrongCase is a small matmul that never writes C: it fails validation.
func wrongCase() benchCase {
	c := matmulCase(8, 8, 8, dtype.F32, "nt", denseWeights)
	setup := c.Setup
	c.Setup = func(eng *lora.Engine, rng *rand.Rand) (*benchRun, error) {
		r, err := setup(eng, rng)
		if err == nil {
			r.Record = func(*vk.Recorder) error { return nil }
		}
		return r, err
	}
	return c
}

// TestSkipAndContinue: cases that exceed a limit (before running, or met at
// run time) are skipped, a case that fails runs no further, and the sweep
// goes on in every case; the exit status says what failed.
func TestSkipAndContinue(t *testing.T) {
	needGPU(t)
	ok := func(m int) benchCase { return matmulCase(m, 8, 8, dtype.F32, "nt", denseWeights) }
	tooBig := matmulCase(maxDim, 1, 1, dtype.F32, "nt", denseWeights)
	runtimeLimit := failingCase(fmt.Errorf("setup: %w", vk.ErrTooLarge))
	for _, tc := range []struct {
		name    string
		cases   []benchCase
		code    int
		summary string
		stderr  []string
	}{
		{"skips", []benchCase{tooBig, ok(9), runtimeLimit, ok(10)}, exitOK,
			"4 cases: 2 ran, 2 skipped (device or host limits), 0 failed",
			[]string{"skip matmul f32 nt 2147483647x1x1: needs 8 GiB in one buffer", "skip matmul f32 nt 8x8x8: at run time: setup: too large"}},
		{"validation", []benchCase{tooBig, wrongCase(), ok(9)}, exitValidate,
			"3 cases: 1 ran, 1 skipped (device or host limits), 1 failed (validation)",
			[]string{"not timed"}},
		{"error", []benchCase{failingCase(errors.New("broken on purpose")), wrongCase(), ok(9), tooBig}, exitError,
			"4 cases: 1 ran, 1 skipped (device or host limits), 2 failed (1 validation, 1 errors)",
			[]string{"FAIL matmul f32 nt 8x8x8: broken on purpose", "2 of 4 cases failed"}},
	} {
		var out, errb bytes.Buffer
		err := runCases(tc.cases, &runFlags{reps: 2, seed: 1}, &out, &errb)
		code := exitCode(err, "bench", &errb)
		t.Logf("%s: stdout:\n%sstderr:\n%s", tc.name, out.String(), errb.String())
		if code != tc.code {
			t.Errorf("%s: exit %d (%v), want %d", tc.name, code, err, tc.code)
		}
		if !strings.Contains(out.String(), "summary: "+tc.summary+"\n") {
			t.Errorf("%s: no summary %q", tc.name, tc.summary)
		}
		for _, s := range tc.stderr {
			if !strings.Contains(errb.String(), s) {
				t.Errorf("%s: stderr lacks %q", tc.name, s)
			}
		}
		// Every case that ran printed its row (ok(9), ok(10): M 9 and 10).
		for _, m := range []int{9, 10} {
			row := fmt.Sprintf("matmul  %-5s %-4s %6d %6d %6d", "f32", "nt", m, 8, 8)
			inCases := false
			for _, c := range tc.cases {
				inCases = inCases || c.M == m
			}
			if inCases && !strings.Contains(out.String(), row) {
				t.Errorf("%s: no row %q after the skipped or failed cases", tc.name, row)
			}
		}
	}
	// JSON: stdout is JSON lines only; the summary goes to stderr.
	var out, errb bytes.Buffer
	err := runCases([]benchCase{tooBig, ok(9)}, &runFlags{reps: 2, seed: 1, json: true}, &out, &errb)
	if err != nil || strings.Count(out.String(), "\n") != 1 || !strings.HasPrefix(out.String(), "{") || !strings.Contains(errb.String(), "summary: 2 cases: 1 ran, 1 skipped") {
		t.Errorf("-json: %v\nstdout:\n%sstderr:\n%s", err, out.String(), errb.String())
	}
}

// TestValidationLayerFailsRun: messages from the validation layer fail a
// run (exit 1) that otherwise passed, and one that failed validation too.
func TestValidationLayerFailsRun(t *testing.T) {
	needGPU(t)
	fakeValidation(t)
	var out, errb bytes.Buffer
	err := runCases([]benchCase{matmulCase(8, 8, 8, dtype.F32, "nt", denseWeights)}, &runFlags{reps: 1, seed: 1}, &out, &errb)
	if code := exitCode(err, "bench", &errb); code != exitError || !strings.Contains(errb.String(), "validation layer reported 1 messages:\nfake VUID") {
		t.Errorf("exit %d (%v), want %d naming the message; stderr:\n%s", code, err, exitError, errb.String())
	}
	err = runCases([]benchCase{wrongCase()}, &runFlags{reps: 1, seed: 1}, &out, &errb)
	if code := exitCode(err, "bench", &errb); code != exitError {
		t.Errorf("with a validation failure: exit %d (%v), want %d", code, err, exitError)
	}
}

// fakeValidation makes the validation layer report one message during each
// run (the second call of every pair: runs clear the messages first).
func fakeValidation(t *testing.T) {
	t.Helper()
	calls := 0
	validationMessages = func() []string {
		vk.ValidationMessages()
		calls++
		if calls%2 == 0 {
			return []string{"fake VUID-vkCmdDispatch-00000"}
		}
		return nil
	}
	t.Cleanup(func() { validationMessages = vk.ValidationMessages })
}
