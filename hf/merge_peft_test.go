package hf

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/hf/hftest"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/peft"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/safetensors"
	"github.com/vklora/vklora/vk/vktest"
)

// exportEnv names a directory to keep TestWriteMergedFromPEFT's base
// checkpoints, adapters and merged checkpoints in, for
// scripts/gpu/check_merged.py to compare with transformers and PEFT's own
// merge_and_unload:
//
//	VKLORA_MERGE_EXPORT=/tmp/merged go test ./hf -run TestWriteMergedFromPEFT
//	python3 scripts/gpu/check_merged.py /tmp/merged/<case>/merged --peft /tmp/merged/<case>/base /tmp/merged/<case>/adapter
const exportEnv = "VKLORA_MERGE_EXPORT"

// The path of a PEFT adapter directory to a merged checkpoint: an adapter
// saved with peft.Save, loaded with peft.Load and uploaded, feeds
// WriteMerged through DeviceModules.Adapter, and each adapted weight and
// bias of the result is within one rounding of the float64 merge of the
// adapter's host tensors. Qwen2 with lora_bias on q, k and v (which have
// biases), Llama with DoRA and rsLoRA, and an NF4 Llama.
func TestWriteMergedFromPEFT(t *testing.T) {
	f := vktest.NewFixture(t)
	e, err := lora.NewEngine(f.Dev, lora.Options{})
	require.NoError(t, err)
	for _, c := range []struct {
		name    string
		spec    hftest.Spec
		targets []string
		edit    func(c *peft.Config)
	}{
		{"qwen2-lora-bias", hftest.Spec{ModelType: "qwen2", Hidden: 32, Intermediate: 48, Heads: 4, KVHeads: 2, Vocab: 64, Seed: 11},
			[]string{"q_proj", "k_proj", "v_proj"}, func(c *peft.Config) { c.LoRABias = true }},
		{"llama-dora-rslora", hftest.Spec{Hidden: 32, Intermediate: 48, Heads: 4, Vocab: 64, Seed: 12},
			[]string{"q_proj", "v_proj", "o_proj", "down_proj"}, func(c *peft.Config) { c.UseDoRA, c.UseRSLoRA = true, true }},
		{"llama-nf4", hftest.Spec{Hidden: 32, Intermediate: 48, Heads: 4, Vocab: 64, NF4: []string{"q_proj", "down_proj"}, DoubleQuant: true, Seed: 13},
			[]string{"q_proj", "o_proj"}, func(*peft.Config) {}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := f.InOwn(t)
			root := t.TempDir()
			if dir := os.Getenv(exportEnv); dir != "" {
				root = filepath.Join(dir, c.name)
				require.NoError(t, os.RemoveAll(root))
			}
			base, adapter, merged := filepath.Join(root, "base"), filepath.Join(root, "adapter"), filepath.Join(root, "merged")
			require.NoError(t, os.MkdirAll(base, 0o755))
			m, err := hftest.Write(base, c.spec)
			require.NoError(t, err)
			ck := openT(t, m)
			d := ck.DType()
			cfg := peft.DefaultConfig()
			cfg.R, cfg.LoRAAlpha, cfg.TaskType = 3, 7, "CAUSAL_LM"
			cfg.TargetModules = &peft.ModuleSet{Names: c.targets}
			c.edit(&cfg)
			a := randomAdapter(t, f, m, &cfg, d)
			require.NoError(t, peft.Save(adapter, a))
			loaded, err := peft.Load(adapter)
			require.NoError(t, err)
			ms, err := loaded.Upload(f.Dev, d)
			require.NoError(t, err)
			defer ms.Release()
			require.NoError(t, ck.WriteMerged(merged, e, func(i int, mod Module) (*lora.LoRALinear, error) {
				return ms.Adapter(Prefix(i, mod))
			}, MergeOptions{}))
			out := openT(t, &hftest.Model{Dir: merged})
			tol := ref.Tolerance(d).Product
			for path, mod := range loaded.Modules {
				name := path[strings.LastIndex(path, ".")+1:]
				o, in := m.Spec.Shape(name)
				rp := ref.Proj{W: baseValues(m, path, d), Out: o, In: in, R: mod.R, S: mod.Scale,
					A: f64(mod.A.Data), B: f64(mod.B.Data)}
				if mod.LoRABias != nil {
					rp.LoRABias = f64(mod.LoRABias.Data)
				}
				if mod.Magnitude != nil {
					rp.Magnitude = f64(mod.Magnitude.Data)
				}
				if v, ok := m.Values[path+".bias"]; ok {
					rp.Bias = f64(v)
				}
				w, b := ref.Merged(&rp)
				got, err := out.ReadTensor(path + ".weight")
				require.NoError(t, err)
				vktest.ExpectClose(t, path, f64(decode(t, got.DType, got.Data)), w, in, tol)
				if b != nil {
					got, err := out.ReadTensor(path + ".bias")
					require.NoError(t, err)
					vktest.ExpectClose(t, path+" bias", f64(decode(t, got.DType, got.Data)), b, o, tol)
				}
			}
			if os.Getenv(exportEnv) != "" {
				t.Logf("python3 scripts/gpu/check_merged.py %s --peft %s %s", merged, base, adapter)
			}
		})
	}
}

// randomAdapter gives every projection cfg targets a random adapter of the
// checkpoint's dtype d: A and B non-zero, a lora_B bias, a DoRA magnitude
// 0.5–1.5 times the row norm of W + s·B·A.
func randomAdapter(t *testing.T, f vktest.Fixture, m *hftest.Model, cfg *peft.Config, d dtype.DType) *peft.Adapter {
	t.Helper()
	a := &peft.Adapter{Config: *cfg, Modules: map[string]*peft.Module{}}
	rnd := func(n int, scale float64) []float32 { return ref.ToFloat32(f.Random(d, n, scale)) }
	for i := 0; i < m.Spec.Layers; i++ {
		for _, p := range hftest.Projections {
			path := hftest.ProjPrefix(i, p.Name)
			if ok, err := cfg.Targets(path); err != nil || !ok {
				require.NoError(t, err)
				continue
			}
			out, in := m.Spec.Shape(p.Name)
			mod, err := cfg.NewModule(path, in, out, d)
			require.NoError(t, err)
			mod.A.Data = rnd(mod.R*in, 1/math.Sqrt(float64(in)))
			mod.B.Data = rnd(out*mod.R, 0.5)
			if mod.LoRABias != nil {
				mod.LoRABias.Data = rnd(out, 1)
			}
			if mod.Magnitude != nil {
				rp := ref.Proj{W: baseValues(m, path, d), Out: out, In: in, R: mod.R, S: mod.Scale, A: f64(mod.A.Data), B: f64(mod.B.Data)}
				n := ref.DoRANorms(&rp)
				for o := range n {
					mod.Magnitude.Data[o] = dtype.Round(d, float32(n[o]*(0.5+f.RNG.Float64())))
				}
			}
			a.Modules[path] = mod
		}
	}
	require.NotEmpty(t, a.Modules)
	return a
}

// decode widens a float tensor's bytes.
func decode(t *testing.T, st string, b []byte) []float32 {
	t.Helper()
	d, err := safetensors.ToDType(st)
	require.NoError(t, err)
	xs := make([]float32, len(b)/d.Size())
	dtype.Decode(d, b, xs)
	return xs
}
