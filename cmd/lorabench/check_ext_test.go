package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vklora/vklora/conformance"
	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/safetensors"
)

// TestCaseFeatures: the features of a case in check's rows, those that
// only some projections have naming them, the shared mask once.
func TestCaseFeatures(t *testing.T) {
	c, err := loadCase("../../testdata/small/lora_qkv-bf16-none-16x64x64_32-r8-1.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if got := caseFeatures(c); got != "" {
		t.Errorf("plain case: features %q, want none", got)
	}
	one := &conformance.Array{Shape: []int{1}, Data: []float32{1}}
	q, k, v := &c.Proj["q"].Ext, &c.Proj["k"].Ext, &c.Proj["v"].Ext
	q.Dropout, q.Mask, q.Magnitude = 0.2, []byte{1}, one
	v.Dropout, v.Mask = 0.2, []byte{0}
	k.LoRABias, k.Bias, k.BiasTrainable = one, one, true
	v.Bias = one
	c.Metadata["dropout_mask"] = "shared"
	want := "dropout=0.2(q,v) mask=shared dora(q) lora_bias(k) bias=trainable(k) bias=frozen(v)"
	if got := caseFeatures(c); got != want {
		t.Errorf("features %q, want %q", got, want)
	}
	for _, n := range c.Projections {
		c.Proj[n].Ext = conformance.Extensions{Dropout: 0.1, Mask: []byte{1}, Magnitude: one}
	}
	c.Metadata["dropout_mask"] = "per_projection"
	if got, want := caseFeatures(c), "dropout=0.1 dora"; got != want {
		t.Errorf("features %q, want %q", got, want)
	}
}

// TestCheckExtensionCase: check runs a case with extensions (a committed
// lora_o case given dropout with its own mask, a lora_B bias and a
// trainable base bias, its expected values from the float64 reference)
// and reports every tensor, the extensions' gradients included, with the
// features after the case's name; in -json as the field "features".
func TestCheckExtensionCase(t *testing.T) {
	needGPU(t)
	const src = "../../testdata/small/lora_o-f16-none-32x64x64-r8-1.safetensors"
	f, err := safetensors.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	c, err := conformance.FromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	d, p, m := c.DType, c.Proj["o"], c.M()
	rng := rand.New(rand.NewPCG(3, 5))
	rp := &ref.Proj{W: ref.FromFloat32(p.Dense()), A: ref.FromFloat32(p.A.Data), B: ref.FromFloat32(p.B.Data),
		Out: p.Out(), In: p.In(), R: p.Rank(), S: p.Scale, P: 0.25, BiasTrainable: true}
	mask := make([]byte, m*rp.In)
	rp.Mask = make([]float64, len(mask))
	for i := range mask {
		if rng.Float64() >= rp.P {
			mask[i], rp.Mask[i] = 1, 1
		}
	}
	put := func(name string, shape []int, xs []float64) {
		if err := f.PutFloat32(name, d, shape, ref.ToFloat32(xs)); err != nil {
			t.Fatal(err)
		}
	}
	rp.LoRABias = ref.RoundTo(d, ref.Random(rng, rp.Out, 0.5))
	rp.Bias = ref.RoundTo(d, ref.Random(rng, rp.Out, 0.5))
	put("o.lora_B.bias", []int{rp.Out}, rp.LoRABias)
	put("o.bias", []int{rp.Out}, rp.Bias)
	if err := f.Put("o.dropout_mask", "U8", []int{m, rp.In}, mask); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"dropout.o": "0.25", "lora_bias.o": "1", "dora.o": "0", "bias.o": "trainable",
		"dropout_mask": "per_projection"} {
		f.Metadata[k] = v
	}
	x, gy := ref.FromFloat32(c.Inputs["X"].Data), ref.FromFloat32(c.Inputs["grad.Y"].Data)
	dx, g := ref.LinearBackward(x, gy, m, rp)
	for key, v := range map[string]struct {
		xs    []float64
		shape []int
	}{
		"Y": {ref.LinearForward(x, m, rp), []int{m, rp.Out}}, "grad.X": {dx, []int{m, rp.In}},
		"grad.o.lora_A": {g.DA, []int{rp.R, rp.In}}, "grad.o.lora_B": {g.DB, []int{rp.Out, rp.R}},
		"grad.o.lora_B.bias": {g.DLoRABias, []int{rp.Out}}, "grad.o.bias": {g.DBias, []int{rp.Out}},
	} {
		if err := f.PutFloat32("expect."+key, dtype.F32, v.shape, ref.ToFloat32(v.xs)); err != nil {
			t.Fatal(err)
		}
		f.Metadata["tol.expect."+key] = fmt.Sprint(ref.Tolerance(d).Layer)
		f.Metadata["torch_err.expect."+key] = "0"
	}
	dir := t.TempDir()
	if err := safetensors.WriteFile(filepath.Join(dir, "lora_o-ext.safetensors"), f); err != nil {
		t.Fatal(err)
	}
	const feats = "dropout=0.25 lora_bias bias=trainable"
	code, out, _ := runCmd(t, "check", "-json", dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != 6 {
		t.Fatalf("exit %d, %d rows; want %d and 6 rows", code, len(lines), exitOK)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		var r struct {
			Case, Tensor, Features string
			Pass                   bool
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil || !r.Pass || r.Features != feats || r.Case != "lora_o-ext.safetensors" {
			t.Errorf("row %s (%v): want a pass of lora_o-ext.safetensors with features %q", l, err, feats)
		}
		seen[r.Tensor] = true
	}
	if !seen["grad.o.lora_B.bias"] || !seen["grad.o.bias"] {
		t.Errorf("the extensions' gradients have no rows: %v", seen)
	}
	code, out, _ = runCmd(t, "check", dir)
	if code != exitOK || !strings.Contains(out, "lora_o-ext.safetensors ["+feats+"] grad.o.lora_B.bias") ||
		!strings.Contains(out, "lora_o/f16/ext") {
		t.Errorf("exit %d; want rows named with the features and an lora_o/f16/ext summary:\n%s", code, out)
	}
}

// TestCheckPEFTSuite runs testdata/peft-small (PEFT's own vectors, once
// generated) through check: every tensor passes, every row names its
// features.
func TestCheckPEFTSuite(t *testing.T) {
	const dir = "../../testdata/peft-small"
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		t.Skipf("%s not generated yet (conformance/gen/peft_vectors.py --small)", dir)
	}
	needGPU(t)
	code, out, _ := runCmd(t, "check", dir)
	if code != exitOK || !strings.Contains(out, "0 tensors failed, 0 files could not run") {
		t.Fatalf("check %s: exit %d", dir, code)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, ".safetensors") && !strings.Contains(l, ".safetensors [") {
			t.Errorf("row without features: %s", l)
		}
	}
}
