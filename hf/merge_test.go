package hf

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/hf/hftest"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/safetensors"
	"github.com/vklora/vklora/vk/vktest"
)

// testAdapter is one projection's adapter on the device and its float64
// twin (the base weight and bias are the checkpoint's).
type testAdapter struct {
	l  *lora.LoRALinear
	rp ref.Proj // A, B, R, S, LoRABias, Magnitude; W and Bias filled in by the check
}

// adapterFor makes a random adapter of rank r for a projection [out, in]
// in dtype d, with a lora_B bias or a DoRA magnitude (0.5–1.5 times the
// true row norm of W + s·B·A, so that c ≠ 1) when asked. w is the base
// weight the magnitude is drawn against.
func adapterFor(f vktest.Fixture, d dtype.DType, out, in, r int, alpha float64, w []float64, loraBias, dora bool) *testAdapter {
	s := lora.LoRAScale(alpha, r, false)
	rp := ref.Proj{W: w, Out: out, In: in, R: r, S: s,
		A: f.Random(d, r*in, 1/math.Sqrt(float64(in))), B: f.Random(d, out*r, 0.5)}
	l := &lora.LoRALinear{A: f.Upload(d, rp.A, r, in), B: f.Upload(d, rp.B, out, r), R: r, Alpha: alpha}
	if loraBias {
		rp.LoRABias = f.Random(d, out, 1)
		l.LoRABias = f.Upload(d, rp.LoRABias, out)
	}
	if dora {
		m := ref.DoRANorms(&rp)
		for o := range m {
			m[o] *= 0.5 + f.RNG.Float64()
		}
		rp.Magnitude = ref.RoundTo(d, m)
		l.Magnitude = f.Upload(d, rp.Magnitude, out)
	}
	return &testAdapter{l: l, rp: rp}
}

func f64(xs []float32) []float64 { return ref.FromFloat32(xs) }

// baseValues is the checkpoint's value of tensor prefix.weight as the
// engine sees it in dtype d: the stored values, or an NF4 weight decoded.
func baseValues(m *hftest.Model, prefix string, d dtype.DType) []float64 {
	if q, ok := m.NF4[prefix]; ok {
		return f64(quant.Dequantize(q))
	}
	return ref.RoundTo(d, f64(m.Values[prefix+".weight"]))
}

type mergeSpec struct {
	name     string
	spec     hftest.Spec
	d        dtype.DType // the merge dtype (0: the checkpoint's)
	shard    int64
	adapters map[Module][2]bool // lora_B bias, DoRA
	replace  string             // a tensor given new values
}

var mergeSpecs = []mergeSpec{
	{name: "qwen2 bf16, lora_B bias, DoRA, replaced bias", spec: hftest.Spec{ModelType: "qwen2", KVHeads: 2, Seed: 3},
		adapters: map[Module][2]bool{Q: {true, false}, V: {false, true}, Down: {false, false}}, replace: "model.layers.1.self_attn.k_proj.bias"},
	{name: "llama f16, sharded", spec: hftest.Spec{DType: dtype.F16, Shards: 3, Seed: 4}, shard: 4096,
		adapters: map[Module][2]bool{O: {false, true}, Gate: {false, false}, Up: {false, false}}},
	{name: "llama bf16 stored, merged in f32", spec: hftest.Spec{Seed: 5}, d: dtype.F32,
		adapters: map[Module][2]bool{Q: {false, false}, Down: {false, true}}},
	{name: "llama bf16 NF4, double quant", spec: hftest.Spec{NF4: []string{"q_proj", "v_proj", "down_proj"}, DoubleQuant: true, NF4Blocksize: 32, Seed: 6},
		adapters: map[Module][2]bool{Q: {false, true}, K: {false, false}, Down: {false, false}}},
	{name: "gemma f32 NF4, tied embeddings", spec: hftest.Spec{ModelType: "gemma", DType: dtype.F32, HeadDim: 8, NF4: []string{"o_proj"}, Seed: 7},
		adapters: map[Module][2]bool{O: {false, false}, Up: {false, true}}},
}

// WriteMerged on tiny checkpoints, dense and NF4, one file and sharded:
// the result opens with Open, keeps every tensor name but NF4's extras,
// types every float tensor as the merge dtype and has no
// quantization_config; each adapted projection's weight is within one
// rounding (Product) of the float64 W + s·B·A (DoRA: c ⊙ (W + s·B·A)), its
// bias b + s·b_B; NF4 projections without adapter are their decoded
// weights, and every other tensor is its stored value rounded to the
// dtype, bit for bit.
func TestWriteMerged(t *testing.T) {
	f := vktest.NewFixture(t)
	smallChunks(t, 20)
	e, err := lora.NewEngine(f.Dev, lora.Options{})
	require.NoError(t, err)
	for _, c := range mergeSpecs {
		t.Run(c.name, func(t *testing.T) {
			f := f.InOwn(t)
			m := hftest.WriteT(t, c.spec)
			ck := openT(t, m)
			d := c.d
			if d == 0 {
				d = ck.DType()
			}
			ads := map[string]*testAdapter{}
			for i := 0; i < m.Spec.Layers; i++ {
				for mod, ft := range c.adapters {
					p := Prefix(i, mod)
					out, in := m.Spec.Shape(string(mod))
					ads[p] = adapterFor(f, d, out, in, 3+i, 2.5+float64(i), baseValues(m, p, d), ft[0], ft[1])
				}
			}
			opt := MergeOptions{DType: c.d, MaxShardBytes: c.shard}
			var replaced []float64
			if c.replace != "" {
				replaced = f.Random(d, len(m.Values[c.replace]), 1)
				opt.Replace = map[string][]float32{c.replace: ref.ToFloat32(replaced)}
			}
			dir := filepath.Join(t.TempDir(), "merged")
			require.NoError(t, ck.WriteMerged(dir, e, func(i int, mod Module) (*lora.LoRALinear, error) {
				if a := ads[Prefix(i, mod)]; a != nil {
					return a.l, nil
				}
				return nil, nil
			}, opt))
			out := openT(t, &hftest.Model{Dir: dir})
			checkMergedConfig(t, dir, d)
			if c.shard > 0 {
				require.Greater(t, len(out.Files()), 1, "sharded")
				require.FileExists(t, filepath.Join(dir, IndexFile))
			} else {
				require.Equal(t, []string{SingleFile}, out.Files())
			}
			st, _ := safetensors.FromDType(d)
			var want []string
			for _, n := range ck.Names() {
				if !strings.Contains(n, ".weight.") { // NF4's absmax, quant_map, quant_state, …
					want = append(want, n)
				}
			}
			require.Equal(t, want, out.Names())
			tol := ref.Tolerance(d).Product
			for _, n := range out.Names() {
				got, err := out.ReadTensor(n)
				require.NoError(t, err)
				require.Equal(t, st, got.DType, n)
				xs := decode(t, got.DType, got.Data)
				prefix, suffix := n[:strings.LastIndex(n, ".")], n[strings.LastIndex(n, ".")+1:]
				a := ads[prefix]
				switch {
				case n == c.replace:
					require.Equal(t, replaced, f64(xs), n)
				case a != nil:
					rp := a.rp
					if v, ok := m.Values[prefix+".bias"]; ok {
						rp.Bias = ref.RoundTo(d, f64(v))
					}
					w, b := ref.Merged(&rp)
					if suffix == "weight" {
						require.Equal(t, []int{rp.Out, rp.In}, got.Shape, n)
						vktest.ExpectClose(t, n, f64(xs), w, rp.In, tol)
					} else {
						vktest.ExpectClose(t, n, f64(xs), b, rp.Out, tol)
					}
				case m.NF4[prefix] != nil:
					out, in := m.NF4[prefix].State.Shape[0], m.NF4[prefix].State.Shape[1]
					require.Equal(t, []int{out, in}, got.Shape, n)
					require.Equal(t, baseValues(m, prefix, d), f64(xs), n)
				default:
					require.Equal(t, m.Shapes[n], got.Shape, n)
					require.Equal(t, ref.RoundTo(d, f64(m.Values[n])), f64(xs), n)
				}
			}
		})
	}
}

// checkMergedConfig: config.json parses, names the dtype and has no
// quantization_config; the other keys are the source's.
func checkMergedConfig(t *testing.T, dir string, d dtype.DType) {
	t.Helper()
	cfg, err := ReadConfig(dir)
	require.NoError(t, err)
	require.Equal(t, d, cfg.DType)
	require.Empty(t, cfg.Quantization)
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	require.NoError(t, err)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(b, &raw))
	require.NotContains(t, raw, "quantization_config")
	require.Equal(t, "X", raw["architectures"].([]any)[0])
}

// The side files: a tokenizer file is copied, the source's weight files
// are not, and a failed write leaves nothing behind, not even its
// temporary directory.
func TestWriteMergedFilesAndFailure(t *testing.T) {
	f := vktest.NewFixture(t)
	e, err := lora.NewEngine(f.Dev, lora.Options{})
	require.NoError(t, err)
	m := hftest.WriteT(t, hftest.Spec{Seed: 8})
	require.NoError(t, os.WriteFile(m.Path("tokenizer.json"), []byte(`{"v":1}`), 0o644))
	require.NoError(t, os.WriteFile(m.Path("pytorch_model.bin"), []byte("pickle"), 0o644))
	ck := openT(t, m)
	parent := t.TempDir()
	dir := filepath.Join(parent, "merged")
	require.NoError(t, ck.WriteMerged(dir, e, nil, MergeOptions{}))
	b, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	require.NoError(t, err)
	require.Equal(t, `{"v":1}`, string(b))
	require.NoFileExists(t, filepath.Join(dir, "pytorch_model.bin"))
	ents, err := os.ReadDir(parent)
	require.NoError(t, err)
	require.Len(t, ents, 1, "only the result")

	// An adapter the device refuses (lora_B bias without a base bias, on
	// a llama without biases: caught before anything is written) and one
	// of the wrong dtype (caught on the device, mid-write).
	bad := adapterFor(f, dtype.F16, 16, 16, 2, 2, make([]float64, 256), false, false)
	for _, c := range []struct {
		ad   Adapters
		want string
	}{
		{AdapterMap(map[Module]*lora.LoRALinear{Q: {A: bad.l.A, B: bad.l.B, R: 2, Alpha: 2, LoRABias: f.Upload(dtype.BF16, make([]float64, 16), 16)}}), "no model.layers.0.self_attn.q_proj.bias"},
		{AdapterMap(map[Module]*lora.LoRALinear{O: bad.l}), "lora_A"},
	} {
		dir := filepath.Join(parent, "failed")
		err := ck.WriteMerged(dir, e, c.ad, MergeOptions{})
		require.ErrorIs(t, err, lora.ErrBadInput)
		require.ErrorContains(t, err, c.want)
		ents, err := os.ReadDir(parent)
		require.NoError(t, err)
		require.Len(t, ents, 1, "nothing left of the failed write: %v", ents)
	}
	err = ck.WriteMerged(dir, e, nil, MergeOptions{})
	require.ErrorIs(t, err, lora.ErrBadInput)
	require.ErrorContains(t, err, "exists")
}

// Argument errors name the argument.
func TestWriteMergedErrors(t *testing.T) {
	f := vktest.NewFixture(t)
	e, err := lora.NewEngine(f.Dev, lora.Options{})
	require.NoError(t, err)
	m := hftest.WriteT(t, hftest.Spec{NF4: []string{"up_proj"}, Seed: 9})
	ck := openT(t, m)
	dir := filepath.Join(t.TempDir(), "x")
	for _, c := range []struct {
		name string
		opt  MergeOptions
		e    *lora.Engine
		want string
	}{
		{"nil engine", MergeOptions{}, nil, "engine is nil"},
		{"dtype", MergeOptions{DType: dtype.U8}, e, "device dtype u8"},
		{"shard size", MergeOptions{MaxShardBytes: -1}, e, "MaxShardBytes -1"},
		{"replace missing", MergeOptions{Replace: map[string][]float32{"nope": {1}}}, e, `Replace["nope"]: the checkpoint has no such tensor`},
		{"replace weight", MergeOptions{Replace: map[string][]float32{"model.layers.0.self_attn.q_proj.weight": {1}}}, e, "projection weights are not replaced"},
		{"replace NF4", MergeOptions{Replace: map[string][]float32{"model.layers.0.mlp.up_proj.weight": {1}}}, e, "merged on the device"},
		{"replace count", MergeOptions{Replace: map[string][]float32{"model.norm.weight": {1, 2}}}, e, "2 values for a tensor of shape [16]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := ck.WriteMerged(dir, c.e, nil, c.opt)
			require.ErrorIs(t, err, lora.ErrBadInput)
			require.ErrorContains(t, err, c.want)
			require.NoDirExists(t, dir)
		})
	}
	// NF4 weights of another dtype than the merge's.
	err = ck.WriteMerged(dir, e, nil, MergeOptions{DType: dtype.F32})
	require.ErrorIs(t, err, lora.ErrBadInput)
	require.ErrorContains(t, err, "dequantizes to bf16")
	require.NoDirExists(t, dir)
}
