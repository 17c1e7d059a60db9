package finetune

import (
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/hf"
	"github.com/vklora/vklora/hf/hftest"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/optim"
	"github.com/vklora/vklora/peft"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

func TestMain(m *testing.M) { vktest.Main(m) }

// fixture is a tiny two-layer checkpoint (GQA: kv narrower than q) and an
// engine on the test device.
type fixture struct {
	t   *testing.T
	dev *vk.Device
	eng *lora.Engine
	ck  *hftest.Model
}

func newFixture(t *testing.T, d dtype.DType) *fixture {
	dev := vktest.Device(t)
	eng, err := lora.NewEngine(dev, lora.Options{})
	require.NoError(t, err)
	ck := hftest.WriteT(t, hftest.Spec{Hidden: 16, Intermediate: 24, Heads: 4, KVHeads: 2, Layers: 2, DType: d})
	return &fixture{t: t, dev: dev, eng: eng, ck: ck}
}

func (f *fixture) load(o Options) *Model {
	m, err := Open(f.eng, f.ck.Dir, o)
	require.NoError(f.t, err)
	f.t.Cleanup(m.Release)
	return m
}

func allLinear(r int, alpha float64) *peft.Config {
	c := peft.DefaultConfig()
	c.R, c.LoRAAlpha = r, alpha
	c.TargetModules = &peft.ModuleSet{IsRegex: true, Regex: peft.AllLinear}
	return &c
}

// TestFresh: a fresh all-linear adapter covers the seven projections of
// each layer with PEFT's init (lora_A within ±1/√in, not all zero; lora_B
// zero), its scale, and tensors the layers and Params share.
func TestFresh(t *testing.T) {
	f := newFixture(t, dtype.F32)
	m := f.load(Options{Config: allLinear(4, 8), Seed: 1})
	require.Len(t, m.Layers, 2)
	require.Len(t, m.Adapter.Modules, 14)
	require.Equal(t, []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
		m.Adapter.Config.TargetModules.Names, "all-linear is written out")
	ps := m.Params()
	require.Len(t, ps, 28)
	require.Equal(t, "model.layers.0.self_attn.q_proj.lora_A.weight", ps[0].Name)
	require.Equal(t, "model.layers.1.mlp.down_proj.lora_B.weight", ps[27].Name)
	l := m.Layers[1]
	require.Same(t, m.Modules[hf.Prefix(1, hf.K)].A, l.QKV.K.A)
	require.Same(t, l.MLP.Down.B, ps[27].Tensor)
	require.Equal(t, 2.0, l.O.Proj.Scale)
	for _, p := range m.Adapter.Paths() {
		mod := m.Adapter.Modules[p]
		bound := float32(1 / math.Sqrt(float64(mod.In())))
		require.True(t, slices.ContainsFunc(mod.A.Data, func(x float32) bool { return x != 0 }), p)
		for _, x := range mod.A.Data {
			require.LessOrEqual(t, float32(math.Abs(float64(x))), bound, p)
		}
		require.Equal(t, make([]float32, len(mod.B.Data)), mod.B.Data, p)
	}
	again, err := NewAdapter(*allLinear(4, 8), &m.Config, nil, dtype.F32, 1)
	require.NoError(t, err)
	require.Equal(t, m.Adapter.Modules[hf.Prefix(0, hf.Up)].A.Data, again.Modules[hf.Prefix(0, hf.Up)].A.Data, "seeded")
}

// TestDefaultTargets: a null target_modules adapts q_proj and v_proj, as
// PEFT does for Llama, and says so in the saved config.
func TestDefaultTargets(t *testing.T) {
	f := newFixture(t, dtype.F32)
	c := peft.DefaultConfig()
	m := f.load(Options{Config: &c, Layers: []int{1}})
	require.Equal(t, []string{"model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"}, m.Adapter.Paths())
	require.Equal(t, []string{"q_proj", "v_proj"}, m.Adapter.Config.TargetModules.Names)
	require.Nil(t, c.TargetModules, "the caller's config is not changed")
	require.Len(t, m.Layers, 1)
	require.Nil(t, m.Layers[0].QKV.K.A)
	require.Len(t, m.Params(), 4)
}

// TestForward: the loaded layers compute the checkpoint's base plus the
// adapter's scaled low-rank term (O against a float64 host product from
// the checkpoint's values).
func TestForward(t *testing.T) {
	f := newFixture(t, dtype.F32)
	c := *allLinear(2, 6)
	a, err := NewAdapter(c, mustConfig(t, f.ck.Dir), nil, dtype.F32, 3)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(7, 7))
	for _, mod := range a.Modules {
		for i := range mod.B.Data {
			mod.B.Data[i] = float32(rng.NormFloat64())
		}
	}
	m := f.load(Options{Adapter: a, Layers: []int{1, 0}})
	require.Equal(t, 1, m.Layers[0].Index)
	l := m.Layers[0]
	const rows = 5
	in := l.O.Proj.A.Dim(1)
	z := make([]float64, rows*in)
	for i := range z {
		z[i] = rng.NormFloat64()
	}
	zt := vktest.Upload(t, f.dev, dtype.F32, z, rows, in)
	rec := vktest.Recorder(t, f.dev)
	p := hf.Prefix(1, hf.O)
	mod := a.Modules[p]
	out := mod.Out()
	want := hostLoRA(z, f.ck.Values[p+".weight"], mod.A.Data, mod.B.Data, rows, in, out, mod.R, mod.Scale)
	require.Equal(t, 3.0, mod.Scale)
	y, saved, err := l.O.Forward(rec, zt)
	require.NoError(t, err)
	defer y.Release()
	rec.Hold(saved)
	require.NoError(t, rec.Submit())
	vktest.ExpectClose(t, "o_proj", vktest.Download(t, y), want, out, ref.Tolerance(dtype.F32).Product)
}

func mustConfig(t *testing.T, dir string) *hf.Config {
	c, err := hf.ReadConfig(dir)
	require.NoError(t, err)
	return c
}

// hostLoRA is Z·Wᵀ + s·(Z·Aᵀ)·Bᵀ in float64.
func hostLoRA(z []float64, w, a, b []float32, rows, in, out, r int, s float64) []float64 {
	y := make([]float64, rows*out)
	for i := 0; i < rows; i++ {
		za := make([]float64, r)
		for k := 0; k < r; k++ {
			for j := 0; j < in; j++ {
				za[k] += z[i*in+j] * float64(a[k*in+j])
			}
		}
		for o := 0; o < out; o++ {
			v := 0.0
			for j := 0; j < in; j++ {
				v += z[i*in+j] * float64(w[o*in+j])
			}
			for k := 0; k < r; k++ {
				v += s * za[k] * float64(b[o*r+k])
			}
			y[i*out+o] = v
		}
	}
	return y
}

// TestTrainSaveResume: one AdamW step over the gradients of all three
// layers moves every lora_B (and no lora_A: B is zero, so is dA); the saved adapter loads back with PEFT's
// shapes and scale and resumes with exactly the trained values, and a
// missing gradient is an error naming the tensor.
func TestTrainSaveResume(t *testing.T) {
	f := newFixture(t, dtype.BF16)
	m := f.load(Options{Config: allLinear(3, 3), Seed: 5, Layers: []int{0}})
	l := m.Layers[0]
	rng := rand.New(rand.NewPCG(1, 2))
	up := func(rows, cols int) *vk.Tensor {
		return vktest.Upload(t, f.dev, dtype.BF16, vktest.Random(rng, dtype.BF16, rows*cols, 1), rows, cols)
	}
	const rows = 6
	cfg := m.Config
	q, kv := cfg.NumAttentionHeads*cfg.HeadDim, cfg.NumKeyValueHeads*cfg.HeadDim
	x, z := up(rows, cfg.HiddenSize), up(rows, q)
	gq, gk, gv, gy, gm := up(rows, q), up(rows, kv), up(rows, kv), up(rows, cfg.HiddenSize), up(rows, cfg.HiddenSize)

	opt, err := optim.NewAdamW(f.dev, m.Params(), optim.AdamWConfig{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8})
	require.NoError(t, err)
	defer opt.Release()
	before, err := m.Trained()
	require.NoError(t, err)

	rec := vktest.Recorder(t, f.dev)
	var g LayerGrads
	defer g.Release()
	yq, yk, yv, sq, err := l.QKV.Forward(rec, x)
	require.NoError(t, err)
	yo, so, err := l.O.Forward(rec, z)
	require.NoError(t, err)
	ym, sm, err := l.MLP.Forward(rec, x)
	require.NoError(t, err)
	for _, r := range []vk.Releaser{yq, yk, yv, yo, ym, sq, so, sm} {
		rec.Hold(r)
	}
	var dx [3]*vk.Tensor
	dx[0], g.QKV, err = l.QKV.Backward(rec, sq, gq, gk, gv)
	require.NoError(t, err)
	dx[1], g.O, err = l.O.Backward(rec, so, gy)
	require.NoError(t, err)
	dx[2], g.MLP, err = l.MLP.Backward(rec, sm, gm)
	require.NoError(t, err)
	for _, d := range dx {
		rec.Hold(d)
	}
	_, err = m.Grads(nil)
	require.ErrorIs(t, err, lora.ErrBadInput)
	missing := g
	missing.MLP[1].B = nil
	_, err = m.Grads([]LayerGrads{missing})
	require.ErrorContains(t, err, "model.layers.0.mlp.up_proj.lora_B.weight")
	grads, err := m.Grads([]LayerGrads{g})
	require.NoError(t, err)
	require.Len(t, grads, len(m.Params()))
	for i, p := range m.Params() {
		require.Equal(t, p.Tensor.Shape(), grads[i].Shape(), p.Name)
	}
	require.NoError(t, opt.Step(rec, grads))
	require.NoError(t, rec.Submit())

	trained, err := m.Trained()
	require.NoError(t, err)
	for _, p := range trained.Paths() {
		// lora_B starts at zero, so lora_A's first gradient is zero too.
		require.Equal(t, before.Modules[p].A.Data, trained.Modules[p].A.Data, p)
		require.NotEqual(t, before.Modules[p].B.Data, trained.Modules[p].B.Data, p)
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	require.NoError(t, m.Save(dir))
	back, err := peft.Load(dir)
	require.NoError(t, err)
	require.Equal(t, trained.Paths(), back.Paths())
	for _, p := range back.Paths() {
		bm, tm := back.Modules[p], trained.Modules[p]
		require.Equal(t, tm.A, bm.A, p)
		require.Equal(t, tm.B, bm.B, p)
		require.Equal(t, 1.0, bm.Scale, p)
		require.Equal(t, dtype.BF16, bm.A.DType, p)
	}
	resumed := f.load(Options{AdapterDir: dir, Layers: []int{0}})
	again, err := resumed.Trained()
	require.NoError(t, err)
	require.Equal(t, trained.Modules, again.Modules)
}

// TestRefusals: every refusal names its cause, wraps the right sentinel
// and leaves nothing allocated (vktest fails the test on a leak).
func TestRefusals(t *testing.T) {
	f := newFixture(t, dtype.F32)
	cfg := mustConfig(t, f.ck.Dir)
	good, err := NewAdapter(*allLinear(2, 2), cfg, nil, dtype.F32, 1)
	require.NoError(t, err)
	withConfig := func(edit func(*peft.Config)) *peft.Config {
		c := allLinear(2, 2)
		edit(c)
		return c
	}
	wrongShape, err := NewAdapter(*allLinear(2, 2), cfg, nil, dtype.F32, 1)
	require.NoError(t, err)
	wq := wrongShape.Modules[hf.Prefix(0, hf.Q)]
	wq.A = &peft.Tensor{Shape: []int{2, 15}, DType: dtype.F32, Data: make([]float32, 30)}
	alien, err := NewAdapter(*allLinear(2, 2), cfg, nil, dtype.F32, 1)
	require.NoError(t, err)
	extra := *alien.Modules[hf.Prefix(1, hf.Q)]
	extra.Path = hf.Prefix(5, hf.Q)
	alien.Modules[extra.Path] = &extra
	for _, c := range []struct {
		name string
		o    Options
		want error
		msg  string
	}{
		{"no adapter", Options{}, lora.ErrBadInput, "exactly one"},
		{"two adapters", Options{Adapter: good, Config: allLinear(2, 2)}, lora.ErrBadInput, "exactly one"},
		{"layer out of range", Options{Config: allLinear(2, 2), Layers: []int{2}}, lora.ErrBadInput, "layer 2 is not in [0, 2)"},
		{"layer twice", Options{Config: allLinear(2, 2), Layers: []int{0, 0}}, lora.ErrBadInput, "listed twice"},
		{"empty layers", Options{Config: allLinear(2, 2), Layers: []int{}}, lora.ErrBadInput, "Layers is empty"},
		{"dtype", Options{Config: allLinear(2, 2), DType: dtype.U8}, lora.ErrBadInput, "not f32, f16 or bf16"},
		{"bias", Options{Config: withConfig(func(c *peft.Config) { c.Bias = peft.BiasLoRAOnly })}, lora.ErrNotImplemented, `bias "lora_only"`},
		{"fresh dora", Options{Config: withConfig(func(c *peft.Config) { c.UseDoRA = true })}, lora.ErrNotImplemented, "use_dora"},
		{"init", Options{Config: withConfig(func(c *peft.Config) { c.InitLoRAWeights = peft.InitWeights{Name: "eva"} })}, lora.ErrNotImplemented, "init_lora_weights"},
		{"no target", Options{Config: withConfig(func(c *peft.Config) { c.TargetModules = &peft.ModuleSet{Names: []string{"c_attn"}} })}, lora.ErrBadInput, "selects no projection"},
		{"wrong shape", Options{Adapter: wrongShape}, lora.ErrBadInput, "model.layers.0.self_attn.q_proj"},
		{"alien module", Options{Adapter: alien}, lora.ErrBadInput, "model.layers.5.self_attn.q_proj is not a decoder-layer projection"},
		{"missing dir", Options{AdapterDir: filepath.Join(t.TempDir(), "none")}, nil, "adapter_config.json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := Open(f.eng, f.ck.Dir, c.o)
			require.Nil(t, m)
			require.ErrorContains(t, err, c.msg)
			if c.want != nil {
				require.ErrorIs(t, err, c.want)
			}
		})
	}
	_, err = Load(nil, nil, Options{})
	require.ErrorIs(t, err, lora.ErrBadInput)
	_, err = Open(f.eng, t.TempDir(), Options{Adapter: good})
	require.Error(t, err)
	var nilModel *Model
	nilModel.Release()
	require.Nil(t, nilModel.Params())
	_, err = nilModel.Trained()
	require.True(t, errors.Is(err, lora.ErrBadInput))
	require.ErrorIs(t, nilModel.Save(t.TempDir()), lora.ErrBadInput)
}

// TestReleaseTwice: Release is idempotent and frees every device object.
func TestReleaseTwice(t *testing.T) {
	f := newFixture(t, dtype.F16)
	m, err := Open(f.eng, f.ck.Dir, Options{Config: allLinear(2, 4)})
	require.NoError(t, err)
	require.Equal(t, dtype.F16, m.Layers[0].QKV.Q.A.DType(), "the checkpoint's dtype")
	m.Release()
	m.Release()
	_, err = m.Grads(nil)
	require.ErrorIs(t, err, lora.ErrBadInput)
}

// TestFrozenBiases: Qwen2's q, k and v biases stay frozen on the layers
// (bias "none") and are no parameters.
func TestFrozenBiases(t *testing.T) {
	dev := vktest.Device(t)
	eng, err := lora.NewEngine(dev, lora.Options{})
	require.NoError(t, err)
	ck := hftest.WriteT(t, hftest.Spec{ModelType: "qwen2", Layers: 1, KVHeads: 2, DType: dtype.F32})
	m, err := Open(eng, ck.Dir, Options{Config: allLinear(2, 2)})
	require.NoError(t, err)
	defer m.Release()
	l := m.Layers[0]
	require.Same(t, l.Weights.Q.Bias, l.QKV.Q.Bias)
	require.False(t, l.QKV.Q.BiasTrainable)
	require.Nil(t, l.O.Proj.Bias)
	require.Len(t, m.Params(), 14)
}
