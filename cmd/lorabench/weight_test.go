package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/ref"
)

// NF4 base weights (-weight): quantized on the device, validated against
// the dequantized weights, compared with their dense twins.

// TestUploadWeightNF4: the device-quantized weight and the values handed to
// the reference are exactly the CPU quantizer's, with and without double
// quantization, and the dense copy is gone once uploadWeight returns.
func TestUploadWeightNF4(t *testing.T) {
	dev, _ := openEngine(t)
	const out, in = 45, 40 // 1800 elements: 64-blocks straddle rows, last block partial
	for _, d := range dtype.Floats {
		for _, dq := range []bool{false, true} {
			rng := rand.New(rand.NewPCG(7, 8))
			w := ref.RoundTo(d, ref.Random(rng, out*in, 0.3))
			f := weightFormat{NF4: true, Blocksize: 64, DoubleQuant: dq}
			before, _ := dev.MemoryStats()
			gw, got, err := uploadWeight(dev, f, d, w, out, in)
			if err != nil {
				t.Fatalf("%s dq=%v: %v", d, dq, err)
			}
			after, _ := dev.MemoryStats()
			held := after - before
			// Two buffers, each rounded up to the device's allocation granule.
			if nb := gw.NF4.Bytes(); gw.Dense != nil || float64(nb) != weightBytes(f, d, out, in) || held < nb || held > nb+2*256 {
				t.Errorf("%s dq=%v: holds %d bytes (dense %v, NF4 %v of %d bytes; weightBytes %g): want only the NF4 weight",
					d, dq, held, gw.Dense, gw.NF4, nb, weightBytes(f, d, out, in))
			}
			q, err := quant.QuantizeNF4(ref.ToFloat32(w), [2]int{out, in}, 64, d, dq)
			if err != nil {
				t.Fatal(err)
			}
			want := ref.FromFloat32(quant.Dequantize(q))
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%s dq=%v: reference weight [%d] = %g, CPU quantizer's %g", d, dq, i, got[i], want[i])
				}
			}
			if e := ref.RelErr(got, w); !(e > 0.01) {
				t.Errorf("%s dq=%v: dequantized weight within %g of the dense one: not quantized?", d, dq, e)
			}
			releaseWeight(gw)
			if now, _ := dev.MemoryStats(); now != before {
				t.Errorf("%s dq=%v: %d bytes left after release", d, dq, now-before)
			}
		}
	}
}

// TestMatmulNF4Forms: the NF4 weight is B stored [N,K] (nt) or [K,N] (nn,
// tn); f32 validates at 2e-5, which only the dequantized reference meets.
func TestMatmulNF4Forms(t *testing.T) {
	needGPU(t)
	for _, form := range []string{"nt", "nn", "tn"} {
		code, out, _ := runCmd(t, "matmul", "-m", "19", "-n", "45", "-k", "40", "-dtype", "f32,bf16", "-form", form,
			"-weight", "nf4", "-double-quant=false", "-blocksize", "32", "-reps", "2", "-warmup", "0", "-warmup-ms", "0")
		if code != exitOK {
			t.Fatalf("%s: exit %d", form, code)
		}
		for _, d := range []string{"f32", "bf16"} {
			row := fmt.Sprintf("matmul/nf4 %-5s %-4s %6d %6d %6d", d, form, 19, 45, 40)
			if !strings.Contains(out, row) || !strings.Contains(out, "blocksize 32") || strings.Contains(out, "double-quantized") {
				t.Errorf("%s: no row %q or wrong NF4 note in\n%s", form, row, out)
			}
		}
	}
}

// TestBenchNF4Layers runs each layer op at a small custom shape with dense
// and NF4 weights: every NF4 row validates, follows its dense twin and
// carries the ratios; its weights hold less memory, the step allocates the
// same.
func TestBenchNF4Layers(t *testing.T) {
	needGPU(t)
	rows := benchRows(t, "-op", "matmul_lora,o,qkv,mlp", "-m", "17", "-hidden", "40", "-inter", "72", "-q", "48", "-kv", "24", "-r", "3",
		"-dtype", "f32,bf16", "-weight", "nf4,dense", "-reps", "2", "-warmup", "0", "-warmup-ms", "0")
	// matmul_lora fwd; o, qkv, mlp fwd and fwdbwd; × 2 dtypes × 2 formats.
	if len(rows) != (1+3*2)*2*2 {
		t.Fatalf("%d rows, want 28", len(rows))
	}
	for i := 0; i < len(rows); i += 2 {
		d, q := rows[i], rows[i+1]
		what := fmt.Sprintf("%s %s %s", d.Op, d.DType, d.Form)
		if d.Weight != "dense" || q.Weight != "nf4" || keyOf(&d) != keyOf(&q) {
			t.Fatalf("rows %d, %d: %s/%s then %s/%s; want a dense row, then its NF4 twin", i, i+1, d.Op, d.Weight, q.Op, q.Weight)
		}
		dt, _ := dtype.Parse(q.DType)
		if !d.Validated || !q.Validated || q.Tol != ref.Tolerance(dt).Layer {
			t.Errorf("%s: not validated: dense %v, nf4 %v (tol %g)", what, d.Validated, q.Validated, q.Tol)
		}
		if q.Blocksize != 64 || !q.DoubleQuant || d.Blocksize != 0 || d.DoubleQuant {
			t.Errorf("%s: blocksize/double_quant nf4 %d/%v dense %d/%v; want 64/true and 0/false", what, q.Blocksize, q.DoubleQuant, d.Blocksize, d.DoubleQuant)
		}
		if !(q.WeightMiB > 0 && q.WeightMiB < d.WeightMiB/3) {
			t.Errorf("%s: weights %g MiB in nf4, %g dense; want under a third", what, q.WeightMiB, d.WeightMiB)
		}
		if !(q.MsVsDense > 0) || q.PeakVsDense != 1 || !(q.PeakTotalVsDense < 1) || d.MsVsDense != 0 {
			t.Errorf("%s: ms_vs_dense %g, peak_vs_dense %g, peak_total_vs_dense %g (dense row %g); want > 0, 1, < 1 (0)",
				what, q.MsVsDense, q.PeakVsDense, q.PeakTotalVsDense, d.MsVsDense)
		}
		if q.FLOPs != d.FLOPs || !(q.Bytes < d.Bytes) {
			t.Errorf("%s: FLOP %g vs %g, bytes %g vs %g; want equal FLOP, fewer bytes", what, q.FLOPs, d.FLOPs, q.Bytes, d.Bytes)
		}
	}
}

// TestBenchNF4Matmul: with a custom shape (or -preset) matmul runs the
// MLP's projections up W [I,H] and down W [H,I] at M tokens; the table ends
// with the NF4 vs dense comparison.
func TestBenchNF4Matmul(t *testing.T) {
	needGPU(t)
	code, out, _ := runCmd(t, "bench", "-op", "matmul", "-m", "33", "-hidden", "40", "-inter", "72", "-dtype", "bf16",
		"-weight", "dense,nf4", "-reps", "2", "-warmup", "0", "-warmup-ms", "0")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, row := range []string{
		"matmul     bf16  nt custom up       33     72     40",
		"matmul/nf4 bf16  nt custom up       33     72     40",
		"matmul     bf16  nt custom down     33     40     72",
		"matmul/nf4 bf16  nt custom down     33     40     72",
		"nf4 vs dense",
		"matmul bf16 nt custom up 33x72x40: ms ",
		"matmul bf16 nt custom down 33x40x72: ms ",
	} {
		if !strings.Contains(out, row) {
			t.Errorf("no %q in\n%s", row, out)
		}
	}
	rows := benchRows(t, "-op", "matmul", "-m", "33", "-hidden", "40", "-inter", "72", "-dtype", "f32", "-weight", "nf4", "-reps", "2", "-warmup", "0", "-warmup-ms", "0")
	if len(rows) != 2 || rows[0].Preset != "custom" || rows[0].Form != "nt custom up" || rows[1].Form != "nt custom down" {
		t.Fatalf("rows %+v; want nt custom up, down", rows)
	}
	for _, r := range rows {
		if r.Weight != "nf4" || !r.Validated || r.MsVsDense != 0 {
			t.Errorf("row %+v: want nf4, validated, without a dense twin", r)
		}
	}
}

// TestBenchNF4Quick: -quick with NF4 only, plain scales, blocksize 32.
func TestBenchNF4Quick(t *testing.T) {
	needGPU(t)
	rows := benchRows(t, "-quick", "-op", "qkv", "-pass", "fwd", "-dtype", "bf16", "-weight", "nf4",
		"-double-quant=false", "-blocksize", "32", "-reps", "2", "-warmup", "0", "-warmup-ms", "0")
	if len(rows) != 1 {
		t.Fatalf("%d rows, want 1", len(rows))
	}
	if r := rows[0]; r.Weight != "nf4" || r.Blocksize != 32 || r.DoubleQuant || !r.Validated || r.Preset != "quick" {
		t.Errorf("row %+v", r)
	}
}

func TestWeightUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "-weight", "fp8"}, `-weight "fp8": want dense, nf4`},
		{[]string{"bench", "-weight", ","}, "-weight is empty"},
		{[]string{"bench", "-weight", "nf4", "-blocksize", "48"}, "-blocksize 48: want a power of two in [32, 4096]"},
		{[]string{"bench", "-weight", "nf4", "-blocksize", "16"}, "-blocksize 16"},
		{[]string{"bench", "-weight", "nf4", "-blocksize", "8192"}, "-blocksize 8192"},
		{[]string{"bench", "-blocksize", "128"}, "-blocksize applies to NF4 weights only"},
		{[]string{"bench", "-double-quant=false"}, "-double-quant applies to NF4 weights only"},
		{[]string{"bench", "-weight", "nf4", "-double-quant=maybe"}, "-double-quant"},
		{[]string{"matmul", "-weight", "int4"}, `-weight "int4"`},
		{[]string{"matmul", "-blocksize", "64"}, "applies to NF4 weights only"},
	} {
		code, _, stderr := runCmd(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
}

// TestTwins: ratios only for an NF4 row whose dense twin validated.
func TestTwins(t *testing.T) {
	var tw twins
	d := result{Op: "mlp", DType: "bf16", Form: "x fwd", M: 1, N: 2, K: 3, Weight: "dense", Validated: true,
		MsMedian: 2, PeakExtraMiB: 4, PeakTotalMiB: 10, WeightMiB: 4}
	q := d
	q.Weight, q.MsMedian, q.PeakExtraMiB, q.PeakTotalMiB, q.WeightMiB = "nf4", 3, 4, 7, 1
	other := q
	other.M = 5 // no twin
	tw.pair(&d)
	tw.pair(&q)
	tw.pair(&other)
	if q.MsVsDense != 1.5 || q.PeakVsDense != 1 || q.PeakTotalVsDense != 0.7 || other.MsVsDense != 0 || len(tw.pairs) != 1 {
		t.Errorf("ratios %g %g %g, unpaired %g, %d pairs", q.MsVsDense, q.PeakVsDense, q.PeakTotalVsDense, other.MsVsDense, len(tw.pairs))
	}
	var b strings.Builder
	tw.write(&b)
	if !strings.Contains(b.String(), "mlp bf16 x fwd 1x2x3: ms 3.000 / 2.000 = 1.50×  peak 4 / 4 = 1.00×  weights 1 / 4 = 0.25×  total 7 / 10 = 0.70×") {
		t.Errorf("comparison:\n%s", b.String())
	}
	failed := d
	failed.Validated = false
	tw = twins{}
	tw.pair(&failed)
	q.MsVsDense = 0
	tw.pair(&q)
	if q.MsVsDense != 0 || len(tw.pairs) != 0 {
		t.Errorf("paired with a dense row that failed validation")
	}
}
