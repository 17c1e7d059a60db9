package main

import (
	"strings"
	"testing"

	"github.com/vklora/vklora/dtype"
)

// TestBenchExtensions: with -dropout, -lora-bias and -dora every layer
// row carries the features on every projection, in its form and JSON, and
// validates against the float64 reference (dropout with the device's
// masks regenerated on the host; DoRA on NF4 weights too), forward and
// forward+backward, the extensions' gradients included.
func TestBenchExtensions(t *testing.T) {
	needGPU(t)
	shape := []string{"-op", "matmul_lora,o,qkv,mlp", "-m", "19", "-hidden", "40", "-inter", "72", "-q", "48", "-kv", "16",
		"-r", "3", "-reps", "1", "-warmup", "0", "-warmup-ms", "0"}
	for _, tc := range []struct {
		flags  []string
		ext    layerExt
		rows   int // 7 per dtype and weight format: matmul_lora fwd, o, qkv, mlp fwd and fwdbwd
		suffix string
	}{
		{[]string{"-dropout", "0.2", "-dtype", "f32,bf16"}, layerExt{Dropout: 0.2}, 14, " dropout=0.2"},
		{[]string{"-lora-bias", "-dtype", "bf16"}, layerExt{LoRABias: true}, 7, " lora_bias"},
		{[]string{"-dora", "-dtype", "f16", "-weight", "dense,nf4"}, layerExt{DoRA: true}, 14, " dora"},
		{[]string{"-dropout", "0.1", "-lora-bias", "-dtype", "f32"}, layerExt{Dropout: 0.1, LoRABias: true}, 7, " dropout=0.1+lora_bias"},
		{[]string{"-dropout", "0.3", "-dora", "-dtype", "bf16", "-weight", "nf4"}, layerExt{Dropout: 0.3, DoRA: true}, 7, " dropout=0.3+dora"},
	} {
		rows := benchRows(t, append(append([]string(nil), shape...), tc.flags...)...)
		if len(rows) != tc.rows {
			t.Errorf("%v: %d rows, want %d", tc.flags, len(rows), tc.rows)
		}
		for _, r := range rows {
			if !r.Validated || !(float64(r.RelErr) <= r.Tol) {
				t.Errorf("%v: %s %s %s not validated: rel err %v, tol %g", tc.flags, r.Op, r.DType, r.Form, r.RelErr, r.Tol)
			}
			if !strings.HasSuffix(r.Form, r.Pass+tc.suffix) || r.Dropout != tc.ext.Dropout || r.LoRABias != tc.ext.LoRABias || r.DoRA != tc.ext.DoRA {
				t.Errorf("%v: row %s form %q dropout %g lora_bias %v dora %v; want the form to end in %q and the JSON to name %+v",
					tc.flags, r.Op, r.Form, r.Dropout, r.LoRABias, r.DoRA, r.Pass+tc.suffix, tc.ext)
			}
		}
	}
	// The table shows the features in the form column.
	code, out, _ := runCmd(t, "bench", "-op", "o", "-m", "19", "-hidden", "40", "-r", "3", "-pass", "fwd", "-dtype", "f32", "-dora",
		"-reps", "1", "-warmup", "0", "-warmup-ms", "0")
	if code != exitOK || !strings.Contains(out, "custom fwd dora") {
		t.Errorf("exit %d; want an o row of form \"custom fwd dora\":\n%s", code, out)
	}
}

// TestBenchExtValidation zeroes the last output of a DoRA MLP step, the
// gradient of down's magnitude: the case must fail validation naming it,
// so the extensions' gradients are compared, not only produced.
func TestBenchExtValidation(t *testing.T) {
	needGPU(t)
	s := quickShape
	s.M = 24
	_, errb := runFailingValidation(t, layerCaseExt(mlpLastOutputZeroed(), s, dtype.F32, passFwdBwd, denseWeights, 64,
		layerExt{Dropout: 0.2, DoRA: true}), 1)
	if !strings.Contains(errb.String(), "worst dm_down") {
		t.Errorf("the failure of dm_down is not reported")
	}
}
