package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/hf"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/peft"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/safetensors"
	"github.com/vklora/vklora/vk/vktest"
)

func TestMain(m *testing.M) { vktest.Main(m) }

// fitInProcess parses args as the command line would and runs the
// fine-tune on the test device (validation on, leaks checked), returning
// the result, stdout and stderr.
func fitInProcess(t *testing.T, args ...string) (*fitConfig, *result, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c, _, err := parse(args, &stderr)
	require.NoError(t, err)
	if c.preset != "" {
		p, _ := findPreset(c.preset)
		require.NoError(t, makeModel(c.model, p, c.layers, c.dtype, c.seed))
	}
	eng, err := lora.NewEngine(vktest.Device(t), lora.Options{})
	require.NoError(t, err)
	res, err := train(eng, c, newProgress(&stderr))
	require.NoError(t, err, stderr.String())
	require.NoError(t, finish(c, res, &stdout))
	return c, res, stdout.String(), stderr.String()
}

// TestTinyFineTune is the CI acceptance run: the default tiny fine-tune
// (a random bf16 llama checkpoint written by hf/hftest, one layer, all
// seven projections, r 8 against a rank-4 teacher, 150 steps of 64
// tokens) lowers the loss at least 100-fold, draws the curve, and writes
// an adapter that peft.Load reads back with PEFT's shapes and scale, a
// lorafit.json and a dump whose student outputs are the saved adapter's.
func TestTinyFineTune(t *testing.T) {
	dir := t.TempDir()
	out, dump := filepath.Join(dir, "out"), filepath.Join(dir, "dump.safetensors")
	c, res, stdout, stderr := fitInProcess(t, "-make-model", filepath.Join(dir, "model"), "-out", out, "-dump", dump)

	losses := res.Losses
	require.Len(t, losses, 150)
	first, last := losses[0], losses[len(losses)-1]
	t.Logf("loss %.3e → %.3e (%.0fx) in %.1fs, %.3g step/s", first, last, first/last, res.Seconds, res.StepsPerSec)
	require.LessOrEqual(t, last, first/100, "the loss must fall at least 100-fold")
	require.Contains(t, stdout, "lorafit: 150 steps in")
	require.Contains(t, stderr, "lorafit: step 150/150 loss")
	require.Contains(t, stderr, "ETA")

	f, err := os.Open(filepath.Join(out, "loss.png"))
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	require.Greater(t, img.Bounds().Dx(), 100)

	a, err := peft.Load(out)
	require.NoError(t, err)
	ck, err := hf.Open(c.model)
	require.NoError(t, err)
	defer ck.Close()
	cfg := ck.Config()
	require.Len(t, a.Modules, 7)
	for _, m := range hf.Modules {
		mod := a.Modules[hf.Prefix(0, m)]
		require.NotNil(t, mod, m)
		o, in := cfg.Shape(m)
		require.Equal(t, []int{8, in}, mod.A.Shape, m)
		require.Equal(t, []int{o, 8}, mod.B.Shape, m)
		require.Equal(t, 2.0, mod.Scale, m)
		require.Equal(t, dtype.BF16, mod.B.DType, m)
	}

	var rep report
	b, err := os.ReadFile(filepath.Join(out, reportName))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &rep))
	require.Equal(t, losses, rep.Losses)
	require.Equal(t, "tiny", rep.Preset)
	require.Equal(t, 4, rep.TeacherRank)
	require.Greater(t, rep.StepsPerSec, 0.0)
	// The step's time split: GPU time from timestamps (lavapipe has them),
	// the host's recording, both within the wall time.
	require.Greater(t, rep.StepGPUMs, 0.0)
	require.Greater(t, rep.StepRecordMs, 0.0)
	require.LessOrEqual(t, rep.StepRecordMs, rep.StepWallMs)
	require.LessOrEqual(t, rep.StepGPUMs, rep.StepWallMs)

	checkDump(t, dump, a, ck)
}

// checkDump: the dump's student q_proj and o_proj outputs are X·Wᵀ +
// s·(X·Aᵀ)·Bᵀ of the checkpoint and the saved adapter, within bf16's
// tolerance (what scripts/gpu/lorafit_peft.py checks against PEFT).
func checkDump(t *testing.T, path string, a *peft.Adapter, ck *hf.Checkpoint) {
	f, err := safetensors.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "0", f.Metadata["lorafit.layers"])
	require.Len(t, f.Names(), 2+2*5)
	for _, c := range []struct {
		in string
		m  hf.Module
	}{{"x", hf.Q}, {"z", hf.O}} {
		x, xs, err := f.Float32(c.in)
		require.NoError(t, err)
		p := hf.Prefix(0, c.m)
		y, ys, err := f.Float32("student." + p)
		require.NoError(t, err)
		w, err := ck.ReadTensor(p + ".weight")
		require.NoError(t, err)
		wd, err := safetensors.ToDType(w.DType)
		require.NoError(t, err)
		wv := make([]float32, w.NumElements())
		dtype.Decode(wd, w.Data, wv)
		mod := a.Modules[p]
		rows, in, out := xs[0], xs[1], ys[1]
		want := make([]float64, rows*out)
		for i := 0; i < rows; i++ {
			xa := make([]float64, mod.R)
			for k := range xa {
				for j := 0; j < in; j++ {
					xa[k] += float64(x[i*in+j]) * float64(mod.A.Data[k*in+j])
				}
			}
			for o := 0; o < out; o++ {
				v := 0.0
				for j := 0; j < in; j++ {
					v += float64(x[i*in+j]) * float64(wv[o*in+j])
				}
				for k := range xa {
					v += mod.Scale * xa[k] * float64(mod.B.Data[o*mod.R+k])
				}
				want[i*out+o] = v
			}
		}
		got := make([]float64, len(y))
		for i, v := range y {
			got[i] = float64(v)
		}
		vktest.ExpectClose(t, p, got, want, out, ref.Tolerance(dtype.BF16).Product)
	}
}

// TestResume: -init-adapter continues from a saved adapter: the first
// step's loss is already far below a fresh start's.
func TestResume(t *testing.T) {
	dir := t.TempDir()
	model, out := filepath.Join(dir, "model"), filepath.Join(dir, "out")
	_, fresh, _, _ := fitInProcess(t, "-make-model", model, "-out", out, "-steps", "60")
	_, resumed, _, _ := fitInProcess(t, "-model", model, "-batch", "64", "-init-adapter", out, "-out", filepath.Join(dir, "again"), "-steps", "3")
	require.Less(t, resumed.Losses[0], fresh.Losses[0]/20)
	a, err := peft.Load(filepath.Join(dir, "again"))
	require.NoError(t, err)
	require.Len(t, a.Modules, 7)
}

// TestCommandLine: bad command lines exit 2 naming the flag, runtime
// failures 1, -h 0.
func TestCommandLine(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, exitUsage, "-model DIR or -make-model DIR is required"},
		{[]string{"-model", "a", "-make-model", "b"}, exitUsage, "exclude each other"},
		{[]string{"-make-model", "b", "-preset", "gpt5"}, exitUsage, `-preset "gpt5"`},
		{[]string{"-model", "a", "-preset", "tiny"}, exitUsage, "-preset sets the sizes of -make-model"},
		{[]string{"-model", "a", "-dtype", "f64"}, exitUsage, `-dtype "f64"`},
		{[]string{"-model", "a", "-target", "q_proj,c_attn"}, exitUsage, `-target "c_attn"`},
		{[]string{"-model", "a", "-init-adapter", "x", "-r", "4"}, exitUsage, "-r: the config of -init-adapter"},
		{[]string{"-model", "a", "-steps", "0"}, exitUsage, "-steps is out of range"},
		{[]string{"-model", "a", "-dropout", "1"}, exitUsage, "-dropout is out of range"},
		{[]string{"-model", "a", "-plot", "x.svg"}, exitUsage, "want a .png"},
		{[]string{"-model", "a", "stray"}, exitUsage, `unexpected argument "stray"`},
		{[]string{"-nope"}, exitUsage, "flag provided but not defined"},
		{[]string{"-h"}, exitOK, "usage: lorafit"},
		{[]string{"-model", filepath.Join(t.TempDir(), "none")}, exitError, "config.json"},
		{[]string{"-make-model", filepath.Join(t.TempDir(), "m"), "-init-adapter", filepath.Join(t.TempDir(), "none"), "-steps", "1"},
			exitError, "adapter_config.json"},
		{[]string{"-make-model", filepath.Join(t.TempDir(), "m"), "-layers", "1", "-r", "2", "-teacher-rank", "1", "-steps", "2",
			"-out", filepath.Join(t.TempDir(), "o")}, exitOK, ""},
	} {
		var stdout, stderr bytes.Buffer
		code := run(c.args, &stdout, &stderr)
		require.Equal(t, c.code, code, "%v: %s", c.args, stderr.String())
		require.Contains(t, stderr.String(), c.msg, c.args)
	}
}

// TestProgress: off a terminal, step 1, every tenth of the run and the last
// step each get one line, with the rate and the ETA once the warm-up steps
// are done; on a terminal one line is redrawn in place.
func TestProgress(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	p.begin(20)
	for i := 0; i < 20; i++ {
		now = now.Add(100 * time.Millisecond)
		p.step(i, 1/float64(i+1))
	}
	p.end()
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	require.Len(t, lines, 11)
	require.Equal(t, "lorafit: step 1/20 loss 1.000e+00 (100ms)", lines[0])
	require.Equal(t, "lorafit: step 10/20 loss 1.000e-01 (1/10 of step 1) 10 step/s ETA 1s (1s)", lines[5])
	require.Equal(t, "lorafit: step 20/20 loss 5.000e-02 (1/20 of step 1) 10 step/s (2s)", lines[10])

	b.Reset()
	p = newProgress(&b)
	p.tty, p.now = true, func() time.Time { return now }
	p.begin(3)
	for i := 0; i < 3; i++ {
		now = now.Add(time.Second)
		p.step(i, 1)
	}
	p.end()
	require.Equal(t, 3, strings.Count(b.String(), "\r"))
	require.Equal(t, 1, strings.Count(b.String(), "\n"))
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{500 * time.Millisecond: "500ms", 12200 * time.Millisecond: "12s",
		185 * time.Second: "3m05s", 62 * time.Minute: "1h02m"} {
		require.Equal(t, want, duration(d))
	}
}

// -profile times every dispatch of the last step and prints them; neither
// it nor building the kernels before the first step (trainer.prepare)
// changes the run: the losses are those of a run without -profile, to the
// last bit, with dropout on.
func TestProfileLeavesTheRunAlone(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	args := func(out string, extra ...string) []string {
		return append([]string{"-make-model", model, "-out", filepath.Join(dir, out), "-steps", "6", "-dropout", "0.1"}, extra...)
	}
	_, plain, _, _ := fitInProcess(t, args("plain")...)
	_, prof, stdout, _ := fitInProcess(t, args("prof", "-profile")...)
	require.Equal(t, plain.Losses, prof.Losses)
	require.Empty(t, plain.Profile)
	require.NotEmpty(t, prof.Profile)
	require.Contains(t, stdout, "profile of step 6:")
	kinds := map[string]bool{}
	for _, d := range prof.Profile {
		require.Positive(t, d.Time, d.Kernel)
		kinds[strings.SplitN(d.Kernel, "_", 2)[0]] = true
	}
	require.True(t, kinds["matmul"] && kinds["adamw"], "the step's kernels: %v", kinds)
	require.Positive(t, prof.PrepareSec)
}

// trainer.prepare records a step dry: it leaves every dropout generator
// where it was, so the run draws the masks it would draw without it.
func TestPrepareKeepsDropoutOffsets(t *testing.T) {
	dir := t.TempDir()
	var stderr bytes.Buffer
	c, _, err := parse([]string{"-make-model", filepath.Join(dir, "model"), "-out", filepath.Join(dir, "out"), "-dropout", "0.1"}, &stderr)
	require.NoError(t, err)
	p, _ := findPreset(c.preset)
	require.NoError(t, makeModel(c.model, p, c.layers, c.dtype, c.seed))
	eng, err := lora.NewEngine(vktest.Device(t), lora.Options{})
	require.NoError(t, err)
	tr, err := newTrainer(eng, c)
	require.NoError(t, err)
	defer tr.release()
	offsets := func() []uint64 {
		var o []uint64
		for _, l := range tr.m.Layers {
			for _, p := range l.Projections() {
				require.NotNil(t, p.Dropout, "dropout is on")
				o = append(o, p.Dropout.Offset)
			}
		}
		return o
	}
	before := offsets()
	require.NoError(t, tr.prepare())
	require.Equal(t, before, offsets())
}
