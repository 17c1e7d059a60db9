package conformance

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/safetensors"
)

const smallDir = "../testdata/small"

func TestLoadAllTestdata(t *testing.T) {
	cases, err := LoadDir(smallDir)
	require.NoError(t, err)
	var index struct {
		Files []struct {
			File     string            `json:"file"`
			Metadata map[string]string `json:"metadata"`
		} `json:"files"`
	}
	b, err := os.ReadFile(filepath.Join(smallDir, "index.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &index))
	require.Len(t, cases, len(index.Files))
	meta := map[string]map[string]string{}
	for _, f := range index.Files {
		meta[f.File] = f.Metadata
	}
	for _, c := range cases {
		name := filepath.Base(c.Path)
		require.Equal(t, meta[name], c.Metadata, name)
		require.True(t, strings.HasPrefix(name, c.Op+"-"), name)
		require.Contains(t, name, "-"+c.DType.String()+"-")
		wantKeys := 1
		if c.Op == "lora_qkv" {
			wantKeys = 3
		}
		if c.Train() {
			wantKeys += 1 + 2*len(c.Projections)
		}
		require.Len(t, c.Expect, wantKeys, name)
		require.Len(t, c.Tol, wantKeys, name)
		floor := ref.Tolerance(c.DType).Conformance
		for k, tol := range c.Tol {
			// The generator's rule, with the floor from the one table.
			require.Equal(t, max(2*c.TorchErr[k], floor), tol, "%s %s", name, k)
			require.Equal(t, dtype.F32, c.Expect[k].DType)
		}
		for _, p := range c.Proj {
			require.Equal(t, p.Quant == "none", p.Weight != nil)
			require.Equal(t, p.Quant != "none", p.NF4 != nil)
			require.Equal(t, c.DType, p.A.DType)
			require.Len(t, p.Dense(), p.Out()*p.In())
		}
	}
}

// TestForwardMatchesExpect recomputes every forward output in float64 from
// the loaded inputs (NF4 decoded by Projection.Dense) and checks it against
// expect.* far below any tolerance: this ties the loader, the NF4 decoder and
// the shapes to the generator's own float64 reference.
func TestForwardMatchesExpect(t *testing.T) {
	cases, err := LoadDir(smallDir)
	require.NoError(t, err)
	for _, c := range cases {
		x := c.Inputs["X"]
		got := map[string][]float64{}
		switch c.Op {
		case "lora_mlp":
			e := lin(c.Proj["gate"], x.Data, c.M())
			g := lin(c.Proj["up"], x.Data, c.M())
			hd := make([]float64, len(e))
			for i := range e {
				hd[i] = act(c.Activation, e[i]) * g[i]
			}
			got["Y"] = lin64(c.Proj["down"], hd, c.M())
		default:
			for out, proj := range c.outputs() {
				got[out] = lin(c.Proj[proj], x.Data, c.M())
			}
		}
		for k, y := range got {
			e := ref.RelErr(y, c.Expect[k].Data)
			require.Less(t, e, 1e-6, "%s %s", c.Path, k)
			require.NoError(t, Compare(c, k, y))
		}
	}
}

func act(name string, e float64) float64 {
	switch name {
	case "swiglu":
		return e / (1 + math.Exp(-e))
	case "geglu":
		return 0.5 * e * (1 + math.Erf(e/math.Sqrt2))
	}
	return 0.5 * e * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(e+0.044715*e*e*e)))
}

func lin(p *Projection, x []float32, m int) []float64 {
	xd := make([]float64, len(x))
	for i, v := range x {
		xd[i] = float64(v)
	}
	return lin64(p, xd, m)
}

// lin64 is X·Wᵀ + s·(X·Aᵀ)·Bᵀ in float64; X [m,in].
func lin64(p *Projection, x []float64, m int) []float64 {
	w := p.Dense()
	in, out, r := p.In(), p.Out(), p.Rank()
	y := make([]float64, m*out)
	u := make([]float64, r)
	for i := 0; i < m; i++ {
		xi := x[i*in : (i+1)*in]
		for j := 0; j < r; j++ {
			u[j] = 0
			for k := 0; k < in; k++ {
				u[j] += xi[k] * float64(p.A.Data[j*in+k])
			}
		}
		for o := 0; o < out; o++ {
			var base, lora float64
			for k := 0; k < in; k++ {
				base += xi[k] * float64(w[o*in+k])
			}
			for j := 0; j < r; j++ {
				lora += u[j] * float64(p.B.Data[o*r+j])
			}
			y[i*out+o] = base + lora*p.Scale
		}
	}
	return y
}

func mustRead(t *testing.T, name string) *safetensors.File {
	f, err := safetensors.ReadFile(filepath.Join(smallDir, name))
	require.NoError(t, err)
	return f
}

func TestLoadRejects(t *testing.T) {
	const o = "lora_o-bf16-nf4-9x33x21-r1-1.safetensors"
	const mlp = "lora_mlp-geglu_tanh-bf16-mixed-7x24x40-r1-1.safetensors"
	cases := []struct {
		name, file string
		edit       func(f *safetensors.File)
		err        string
	}{
		{"op", o, func(f *safetensors.File) { f.Metadata["op"] = "conv" }, `op "conv"`},
		{"activation on o", o, func(f *safetensors.File) { f.Metadata["activation"] = "swiglu" }, "activation"},
		{"mlp activation", mlp, func(f *safetensors.File) { f.Metadata["activation"] = "relu" }, `activation "relu"`},
		{"dtype", o, func(f *safetensors.File) { f.Metadata["dtype"] = "f64" }, `dtype "f64"`},
		{"projections", o, func(f *safetensors.File) { f.Metadata["projections"] = "q" }, `needs projections "o"`},
		{"scale", o, func(f *safetensors.File) { f.Metadata["scale.o"] = "nan" }, "scale.o"},
		{"quant", o, func(f *safetensors.File) { f.Metadata["quant.o"] = "int8" }, `quant.o = "int8"`},
		{"quant dq mismatch", o, func(f *safetensors.File) { f.Metadata["quant.o"] = "nf4-dq" }, "nested = false"},
		{"missing X", o, func(f *safetensors.File) { delete(f.Tensors, "X") }, `no tensor "X"`},
		{"X dtype", o, func(f *safetensors.File) { f.Tensors["X"] = retype(f.Tensors["X"]) }, `"X" has dtype F16, want bf16`},
		{"extra", o, func(f *safetensors.File) { f.Tensors["junk"] = f.Tensors["X"] }, "unexpected tensors [junk]"},
		{"missing tol", o, func(f *safetensors.File) { delete(f.Metadata, "tol.expect.grad.X") }, "tol.expect.grad.X missing"},
		{"stray tol", o, func(f *safetensors.File) { f.Metadata["tol.expect.Q"] = "1" }, "tol.expect.Q names no expected tensor"},
		{"missing expect", o, func(f *safetensors.File) { delete(f.Tensors, "expect.grad.o.lora_B") }, `no tensor "expect.grad.o.lora_B"`},
		{"A rank", o, func(f *safetensors.File) { reshape(f, "o.lora_A", 33, 1) }, "are not [r,in] and [out,r]"},
		{"X width", o, func(f *safetensors.File) { reshape(f, "X", 33, 9) }, "projection o has in = 33"},
		{"grad shape", o, func(f *safetensors.File) { reshape(f, "grad.Y", 21, 9) }, "grad.Y has shape [21 9], want [M,21] = [9,21]"},
		{"expect shape", o, func(f *safetensors.File) { reshape(f, "expect.grad.o.lora_A", 33, 1) }, "expect.grad.o.lora_A has shape [33 1]"},
		{"mlp dims", mlp, func(f *safetensors.File) { reshape(f, "down.lora_B", 1, 24) }, "are not [r,in] and [out,r]"},
		{"dense weight", mlp, func(f *safetensors.File) { reshape(f, "down.weight", 40, 24) }, "down.weight has shape [40 24], want [out,in] = [24,40]"},
		{"nf4 broken", o, func(f *safetensors.File) { delete(f.Tensors, "o.weight.absmax") }, "projection o"},
		{"dropout without mask", o, func(f *safetensors.File) { f.Metadata["dropout.o"] = "0.1" }, "dropout.o = 0.1 needs o.dropout_mask"},
		{"dropout of 1", o, func(f *safetensors.File) { f.Metadata["dropout.o"] = "1" }, "not a probability in [0, 1)"},
		{"dropout not a number", o, func(f *safetensors.File) { f.Metadata["dropout.o"] = "off" }, `dropout.o = "off"`},
		{"lora_bias without tensor", o, func(f *safetensors.File) { f.Metadata["lora_bias.o"] = "1" }, `no tensor "o.lora_B.bias"`},
		{"lora_bias flag", o, func(f *safetensors.File) { f.Metadata["lora_bias.o"] = "yes" }, `lora_bias.o = "yes" is not 0 or 1`},
		{"dora without magnitude", mlp, func(f *safetensors.File) { f.Metadata["dora.up"] = "1" }, `no tensor "up.lora_magnitude"`},
		{"dora with lora_bias", o, func(f *safetensors.File) { f.Metadata["dora.o"], f.Metadata["lora_bias.o"] = "1", "1" }, "which PEFT refuses"},
		{"base bias without tensor", o, func(f *safetensors.File) { f.Metadata["bias.o"] = "frozen" }, `no tensor "o.bias"`},
		{"base bias mode", o, func(f *safetensors.File) { f.Metadata["bias.o"] = "all" }, `bias.o = "all" is not none, frozen or trainable`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := mustRead(t, c.file)
			_, err := FromFile(f)
			require.NoError(t, err)
			c.edit(f)
			_, err = FromFile(f)
			require.Error(t, err)
			require.Contains(t, err.Error(), c.err)
		})
	}
}

// TestLoadExtensionsOff accepts the extension keys with their off values:
// a generator may write them for every case.
func TestLoadExtensionsOff(t *testing.T) {
	f := mustRead(t, "lora_mlp-geglu_tanh-bf16-mixed-7x24x40-r1-1.safetensors")
	for _, p := range []string{"gate", "up", "down"} {
		f.Metadata["dropout."+p] = "0.0"
		f.Metadata["lora_bias."+p] = "0"
		f.Metadata["dora."+p] = "0"
		f.Metadata["bias."+p] = "none"
	}
	f.Metadata["dropout_mask"] = "shared"
	_, err := FromFile(f)
	require.NoError(t, err)
}

// retype relabels a bf16 tensor as f16 (same size) to test dtype checks.
func retype(t safetensors.Tensor) safetensors.Tensor {
	t.DType = "F16"
	return t
}

func reshape(f *safetensors.File, name string, dims ...int) {
	t := f.Tensors[name]
	t.Shape = dims
	f.Tensors[name] = t
}

func TestCompareMessage(t *testing.T) {
	c, err := Load(filepath.Join(smallDir, "lora_o-f16-none-32x64x64-r8-1.safetensors"))
	require.NoError(t, err)
	y := append([]float32(nil), c.Expect["Y"].Data...)
	require.NoError(t, Compare(c, "Y", y))
	y[65] += 100
	err = Compare(c, "Y", y)
	require.ErrorContains(t, err, "Y rel err")
	require.ErrorContains(t, err, "[1,1] got")
	require.ErrorContains(t, Compare(c, "Y", y[:3]), "has 3 values")
	y[65] = float32(math.NaN())
	require.ErrorContains(t, Compare(c, "Y", y), "Y rel err +Inf")
	require.ErrorContains(t, Compare(c, "Q", y), "no expect.Q")
}

func TestExpand(t *testing.T) {
	all, err := Expand(smallDir)
	require.NoError(t, err)
	require.Len(t, all, 13)
	require.True(t, sort.StringsAreSorted(all))
	both, err := Expand(all[3], smallDir, all[0])
	require.NoError(t, err)
	require.Equal(t, all, both)
	_, err = Expand(filepath.Join(smallDir, "index.json"))
	require.ErrorContains(t, err, "not a .safetensors file")
	_, err = Expand(filepath.Join(smallDir, "missing.safetensors"))
	require.Error(t, err)
	_, err = LoadDir(t.TempDir())
	require.ErrorContains(t, err, "no .safetensors files")
}
