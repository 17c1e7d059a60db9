package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readPNG checks that file is a decodable, non-empty PNG of a sensible size.
func readPNG(t *testing.T, file string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s (%d bytes) is not a PNG: %v", file, len(b), err)
	}
	if sz := img.Bounds().Size(); len(b) == 0 || sz.X < 100 || sz.Y < 100 {
		t.Errorf("%s: %d bytes, %v pixels", file, len(b), sz)
	}
}

// TestWritePlot charts made-up rows in every metric and format; rows that
// failed validation are left out, and a chart of none is an error.
func TestWritePlot(t *testing.T) {
	dir := t.TempDir()
	rows := []result{
		{Op: "matmul", DType: "bf16", Form: "nt", M: 8, N: 8, K: 8, Weight: "dense", Validated: true, TFLOPs: 1.5, MsMedian: 2, PeakExtraMiB: 0},
		{Op: "matmul", DType: "bf16", Form: "nt", M: 8, N: 8, K: 8, Weight: "nf4", Validated: true, TFLOPs: 1.2, MsMedian: 2.5},
		{Op: "mlp", DType: "f32", Form: "quick fwdbwd", M: 64, N: 96, K: 160, Weight: "dense", Validated: false},
		{Op: "mlp", DType: "f32", Form: "quick fwdbwd", M: 64, N: 96, K: 160, Weight: "nf4", Validated: true, TFLOPs: 0.4, PeakExtraMiB: 3},
	}
	for metric := range plotMetrics {
		file := filepath.Join(dir, metric+".png")
		if err := checkPlot(file, metric); err != nil {
			t.Fatal(err)
		}
		if err := writePlot(file, metric, "test device", rows); err != nil {
			t.Fatalf("%s: %v", metric, err)
		}
		readPNG(t, file)
	}
	svg := filepath.Join(dir, "chart.svg")
	if err := writePlot(svg, "ms", "test device", rows); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(svg); err != nil || !bytes.Contains(b, []byte("<svg")) || !bytes.Contains(b, []byte("mlp/nf4")) {
		t.Errorf("svg: %v, %.200q", err, b)
	}
	if err := writePlot(filepath.Join(dir, "none.png"), "tflops", "d", rows[2:3]); err == nil || !strings.Contains(err.Error(), "no validated rows") {
		t.Errorf("chart of no validated rows: %v", err)
	}
}

// TestBenchPlot: -plot on a real run writes the chart.
func TestBenchPlot(t *testing.T) {
	needGPU(t)
	file := filepath.Join(t.TempDir(), "bench.png")
	code, _, _ := runCmd(t, "bench", "-quick", "-op", "o", "-pass", "fwd", "-dtype", "f32", "-weight", "dense,nf4",
		"-reps", "2", "-warmup", "0", "-warmup-ms", "0", "-plot", file, "-plot-metric", "ms")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	readPNG(t, file)
	code, _, _ = runCmd(t, "matmul", "-sizes", "8,16", "-reps", "1", "-warmup", "0", "-warmup-ms", "0", "-json", "-plot", file)
	if code != exitOK {
		t.Fatalf("matmul -plot: exit %d", code)
	}
	readPNG(t, file)
}

func TestPlotUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "-plot", filepath.Join(dir, "x.jpg")}, "want a .png or .svg file"},
		{[]string{"bench", "-plot", filepath.Join(dir, "noext")}, "want a .png or .svg file"},
		{[]string{"bench", "-plot", filepath.Join(dir, "missing", "x.png")}, "does not exist"},
		{[]string{"matmul", "-plot", filepath.Join(dir, "x.png"), "-plot-metric", "gbs"}, `-plot-metric "gbs": want tflops, ms or peak`},
	} {
		code, _, stderr := runCmd(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
}
