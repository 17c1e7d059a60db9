package finetune

import (
	"errors"
	"maps"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/hf"
	"github.com/vklora/vklora/hf/hftest"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/optim"
	"github.com/vklora/vklora/peft"
	"github.com/vklora/vklora/quant"
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
	recordLayerStep(t, rec, l, x, z, [5]*vk.Tensor{gq, gk, gv, gy, gm}, &g)
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
	// The fixture is Llama without attention_bias or mlp_bias: no biases.
	withBias := func(bias string) *peft.Adapter {
		a, err := NewAdapter(*withConfig(func(c *peft.Config) {
			c.Bias = bias
			c.TargetModules = &peft.ModuleSet{Names: []string{"q_proj"}}
		}), cfg, []int{0}, dtype.F32, 1)
		require.NoError(t, err)
		return a
	}
	biasless := withBias(peft.BiasLoRAOnly)
	biasless.Modules[hf.Prefix(0, hf.Q)].BaseBias = &peft.Tensor{Shape: []int{16}, DType: dtype.F32, Data: make([]float32, 16)}
	alienBias := withBias(peft.BiasAll)
	alienBias.OtherBiases = map[string]*peft.Tensor{hf.Prefix(0, hf.Up): {Shape: []int{24}, DType: dtype.F32, Data: make([]float32, 24)}}
	fanInFanOut := withBias(peft.BiasNone)
	fanInFanOut.Config.FanInFanOut = true
	for _, mod := range fanInFanOut.Modules {
		mod.FanInFanOut = true
	}
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
		{"fan_in_fan_out", Options{Adapter: fanInFanOut}, lora.ErrNotImplemented, "fan_in_fan_out"},
		{"init", Options{Config: withConfig(func(c *peft.Config) { c.InitLoRAWeights = peft.InitWeights{Name: "eva"} })}, lora.ErrNotImplemented, "init_lora_weights"},
		{"no target", Options{Config: withConfig(func(c *peft.Config) { c.TargetModules = &peft.ModuleSet{Names: []string{"c_attn"}} })}, lora.ErrBadInput, "selects no projection"},
		{"wrong shape", Options{Adapter: wrongShape}, lora.ErrBadInput, "model.layers.0.self_attn.q_proj"},
		{"alien module", Options{Adapter: alien}, lora.ErrBadInput, "model.layers.5.self_attn.q_proj is not a decoder-layer projection"},
		{"bias of a bias-less projection", Options{Adapter: biasless}, lora.ErrBadInput, "model.layers.0.self_attn.q_proj has a trained base bias"},
		{"alien bias", Options{Adapter: alienBias}, lora.ErrBadInput, "model.layers.0.mlp.up_proj.bias is not the bias"},
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
	dora := *allLinear(2, 2)
	dora.UseDoRA = true
	_, err = NewAdapter(dora, cfg, nil, dtype.F32, 1)
	require.ErrorIs(t, err, lora.ErrBadInput)
	require.ErrorContains(t, err, "use_dora")
	require.ErrorContains(t, err, "Options.Config")
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

// stepIO is one layer step's inputs, in float64 for the reference: X for
// QKV and the MLP, Z for O, and the upstream gradients.
type stepIO struct {
	rows                     int
	x, z, gq, gk, gv, gy, gm []float64
}

// layerStep records one layer's forward and backward on random inputs of
// rows rows (exact in the layer dtype) and submits them. The gradients are
// released when the test ends.
func layerStep(t *testing.T, dev *vk.Device, rec *vk.Recorder, m *Model, l *Layer, rng *rand.Rand, rows int) (*LayerGrads, stepIO) {
	t.Helper()
	d, cfg := m.DType, m.Config
	q, kv := cfg.NumAttentionHeads*cfg.HeadDim, cfg.NumKeyValueHeads*cfg.HeadDim
	io := stepIO{rows: rows}
	up := func(dst *[]float64, cols int) *vk.Tensor {
		*dst = vktest.Random(rng, d, rows*cols, 1)
		return vktest.Upload(t, dev, d, *dst, rows, cols)
	}
	x, z := up(&io.x, cfg.HiddenSize), up(&io.z, q)
	gq, gk, gv := up(&io.gq, q), up(&io.gk, kv), up(&io.gv, kv)
	gy, gm := up(&io.gy, cfg.HiddenSize), up(&io.gm, cfg.HiddenSize)
	g := &LayerGrads{}
	t.Cleanup(g.Release)
	recordLayerStep(t, rec, l, x, z, [5]*vk.Tensor{gq, gk, gv, gy, gm}, g)
	require.NoError(t, rec.Submit())
	return g, io
}

// refLayer is layer i of the checkpoint with the adapter a's starting
// values as package ref's projections, in hf.Modules order: the base weight
// (NF4 decoded) and bias from the files, the adapter's lora_A, lora_B,
// scale and magnitude, its trained base bias or bias "all"'s other bias in
// place of the checkpoint's, and BiasTrainable where the config trains the
// bias.
func refLayer(ck *hftest.Model, a *peft.Adapter, i int) []*ref.Proj {
	var rps []*ref.Proj
	for _, pm := range hf.Modules {
		p := hf.Prefix(i, pm)
		out, in := ck.Spec.Shape(string(pm))
		rp := &ref.Proj{Out: out, In: in}
		if w, ok := ck.NF4[p]; ok {
			rp.W = ref.FromFloat32(quant.Dequantize(w))
		} else {
			rp.W = ref.FromFloat32(ck.Values[p+".weight"])
		}
		if b, ok := ck.Values[p+".bias"]; ok {
			rp.Bias = ref.FromFloat32(b)
			rp.BiasTrainable = a.Config.Bias == peft.BiasAll
		}
		if mod := a.Modules[p]; mod != nil {
			rp.A, rp.B, rp.R, rp.S = ref.FromFloat32(mod.A.Data), ref.FromFloat32(mod.B.Data), mod.R, mod.Scale
			if mod.Magnitude != nil {
				rp.Magnitude = ref.FromFloat32(mod.Magnitude.Data)
			}
			if mod.BaseBias != nil {
				rp.Bias = ref.FromFloat32(mod.BaseBias.Data)
			}
			rp.BiasTrainable = rp.Bias != nil && a.Config.Bias != peft.BiasNone
		} else if b := a.OtherBiases[p]; b != nil {
			rp.Bias = ref.FromFloat32(b.Data)
		}
		rps = append(rps, rp)
	}
	return rps
}

// refGrads is the float64 backward of refLayer's projections for io, in
// hf.Modules order.
func refGrads(rps []*ref.Proj, io stepIO, act ref.Activation) []ref.Grads {
	_, dq, dk, dv := ref.QKVBackward(io.x, io.gq, io.gk, io.gv, io.rows, rps[0], rps[1], rps[2])
	_, do := ref.LinearBackward(io.z, io.gy, io.rows, rps[3])
	_, dgate, dup, ddown := ref.MLPBackward(io.x, io.gm, io.rows, rps[4], rps[5], rps[6], act)
	return []ref.Grads{dq, dk, dv, do, dgate, dup, ddown}
}

// TestTrainedBiases: bias "lora_only" trains the biases of the adapted
// projections (Qwen2: q's; k and v stay frozen), bias "all" every
// projection's (Llama with attention_bias and mlp_bias: the seven, four of
// them without adapter), and on a checkpoint without biases there is none
// to train, as in PEFT. The biases start at the checkpoint's as copies the
// Model owns, are listed under PEFT's keys with their gradients, which
// match the float64 ΣG over rows (through the gated MLP for gate and up),
// move with the optimizer, and are saved so that peft.Load and a resumed
// Model read them back.
func TestTrainedBiases(t *testing.T) {
	for _, c := range []struct {
		name    string
		spec    hftest.Spec
		bias    string
		targets []string
		want    []string // one layer's Params suffixes after "model.layers.0."
	}{
		{"qwen2 lora_only", hftest.Spec{ModelType: "qwen2", Hidden: 16, Intermediate: 24, Heads: 4, KVHeads: 2, Layers: 2, DType: dtype.F32},
			peft.BiasLoRAOnly, []string{"q_proj", "o_proj", "up_proj"}, []string{
				"self_attn.q_proj.lora_A.weight", "self_attn.q_proj.lora_B.weight", "self_attn.q_proj.base_layer.bias",
				"self_attn.o_proj.lora_A.weight", "self_attn.o_proj.lora_B.weight",
				"mlp.up_proj.lora_A.weight", "mlp.up_proj.lora_B.weight"}},
		{"llama all", hftest.Spec{Hidden: 16, Intermediate: 24, Heads: 4, KVHeads: 2, Layers: 2, DType: dtype.BF16, AttentionBias: true, MLPBias: true},
			peft.BiasAll, []string{"q_proj", "o_proj", "down_proj"}, []string{
				"self_attn.q_proj.lora_A.weight", "self_attn.q_proj.lora_B.weight", "self_attn.q_proj.base_layer.bias",
				"self_attn.k_proj.bias", "self_attn.v_proj.bias",
				"self_attn.o_proj.lora_A.weight", "self_attn.o_proj.lora_B.weight", "self_attn.o_proj.base_layer.bias",
				"mlp.gate_proj.bias", "mlp.up_proj.bias",
				"mlp.down_proj.lora_A.weight", "mlp.down_proj.lora_B.weight", "mlp.down_proj.base_layer.bias"}},
		{"qwen2 all", hftest.Spec{ModelType: "qwen2", Hidden: 16, Intermediate: 24, Heads: 4, KVHeads: 2, Layers: 2, DType: dtype.F32},
			peft.BiasAll, []string{"k_proj", "gate_proj"}, []string{
				"self_attn.q_proj.bias",
				"self_attn.k_proj.lora_A.weight", "self_attn.k_proj.lora_B.weight", "self_attn.k_proj.base_layer.bias",
				"self_attn.v_proj.bias",
				"mlp.gate_proj.lora_A.weight", "mlp.gate_proj.lora_B.weight"}},
		{"llama without biases", hftest.Spec{Hidden: 16, Intermediate: 24, Heads: 4, KVHeads: 2, Layers: 2, DType: dtype.F32},
			peft.BiasAll, []string{"q_proj"}, []string{"self_attn.q_proj.lora_A.weight", "self_attn.q_proj.lora_B.weight"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dev := vktest.Device(t)
			eng, err := lora.NewEngine(dev, lora.Options{})
			require.NoError(t, err)
			ck := hftest.WriteT(t, c.spec)
			d := c.spec.DType
			pc := allLinear(2, 4)
			pc.Bias, pc.TargetModules = c.bias, &peft.ModuleSet{Names: c.targets}
			a, err := NewAdapter(*pc, mustConfig(t, ck.Dir), nil, d, 3)
			require.NoError(t, err)
			rng := rand.New(rand.NewPCG(11, 12))
			for _, mod := range a.Modules {
				require.Nil(t, mod.BaseBias, "NewAdapter leaves the bias to Load")
				copy(mod.B.Data, ref.ToFloat32(vktest.Random(rng, d, len(mod.B.Data), 1)))
			}
			m, err := Open(eng, ck.Dir, Options{Adapter: a, Layers: []int{1}})
			require.NoError(t, err)
			defer m.Release()
			for _, mod := range a.Modules {
				require.Nil(t, mod.BaseBias, "the caller's adapter is not changed")
			}
			require.Nil(t, a.OtherBiases)

			var names []string
			for _, p := range m.Params() {
				names = append(names, p.Name)
			}
			want := make([]string, len(c.want))
			for i, s := range c.want {
				want[i] = "model.layers.1." + s
			}
			require.Equal(t, want, names)

			// The starting biases are the checkpoint's, in tensors of the
			// Model's own (the layer's frozen bias is not trained).
			l := m.Layers[0]
			trainedBias := map[string]bool{}
			for k, p := range l.Projections() {
				path := hf.Prefix(1, hf.Modules[k])
				if !p.BiasTrainable {
					if b, ok := ck.Values[path+".bias"]; ok {
						require.Equal(t, c.bias, peft.BiasLoRAOnly, path)
						require.Same(t, l.Weights.Linear(hf.Modules[k]).Bias, p.Bias, path)
						require.Equal(t, ref.FromFloat32(b), vktest.Download(t, p.Bias), path)
					}
					continue
				}
				trainedBias[path] = true
				require.NotSame(t, l.Weights.Linear(hf.Modules[k]).Bias, p.Bias, path)
				require.Equal(t, ref.FromFloat32(ck.Values[path+".bias"]), vktest.Download(t, p.Bias), path)
				if mod := m.Adapter.Modules[path]; mod != nil {
					require.Same(t, m.Modules[path].BaseBias, p.Bias, path)
					require.Equal(t, ck.Values[path+".bias"], mod.BaseBias.Data, path)
					require.Equal(t, d, mod.BaseBias.DType, path)
				} else {
					require.Same(t, m.OtherBiases[path], p.Bias, path)
					require.Equal(t, ck.Values[path+".bias"], m.Adapter.OtherBiases[path].Data, path)
				}
			}
			nOther := 0
			for p := range trainedBias {
				if m.Adapter.Modules[p] == nil {
					nOther++
				}
			}
			require.Len(t, m.OtherBiases, nOther)

			// One step: the bias gradients against the float64 reference.
			rec := vktest.Recorder(t, dev)
			rps := refLayer(ck, m.Adapter, 1)
			g, io := layerStep(t, dev, rec, m, l, rng, 7)
			wantG := refGrads(rps, io, m.Config.Activation)
			for k, pg := range g.list() {
				path := hf.Prefix(1, hf.Modules[k])
				require.Equal(t, trainedBias[path], rps[k].BiasTrainable, path)
				if !trainedBias[path] {
					require.Nil(t, pg.Bias, path)
					continue
				}
				require.NotNil(t, pg.Bias, path)
				vktest.ExpectClose(t, path+" d bias", vktest.Download(t, pg.Bias), wantG[k].DBias, rps[k].Out, ref.Tolerance(d).Layer)
			}
			grads, err := m.Grads([]LayerGrads{*g})
			require.NoError(t, err)
			ps := m.Params()
			require.Len(t, grads, len(ps))
			for i, p := range ps {
				if strings.HasSuffix(p.Name, "bias") {
					k := slices.IndexFunc(hf.Modules, func(pm hf.Module) bool { return strings.Contains(p.Name, "."+string(pm)+".") })
					require.Same(t, g.list()[k].Bias, grads[i], p.Name)
				}
			}
			if len(trainedBias) > 0 {
				missing := *g
				missing.QKV[0].Bias, missing.QKV[1].Bias, missing.MLP[2].Bias = nil, nil, nil
				_, err = m.Grads([]LayerGrads{missing})
				require.ErrorContains(t, err, "bias")
			}
			opt, err := optim.NewAdamW(dev, ps, optim.AdamWConfig{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8})
			require.NoError(t, err)
			defer opt.Release()
			require.NoError(t, opt.Step(rec, grads))
			require.NoError(t, rec.Submit())

			trained, err := m.Trained()
			require.NoError(t, err)
			var others []string
			for path := range trainedBias {
				got := trained.OtherBiases[path]
				if mod := trained.Modules[path]; mod != nil {
					got = mod.BaseBias
				} else {
					others = append(others, path)
				}
				require.NotNil(t, got, path)
				require.Equal(t, d, got.DType, path)
				require.NotEqual(t, ck.Values[path+".bias"], got.Data, "%s moved", path)
			}
			require.ElementsMatch(t, others, slices.Collect(maps.Keys(trained.OtherBiases)))
			for p, mod := range trained.Modules {
				if !trainedBias[p] {
					require.Nil(t, mod.BaseBias, p)
				}
			}

			dir := filepath.Join(t.TempDir(), "adapter")
			require.NoError(t, m.Save(dir))
			back, err := peft.Load(dir)
			require.NoError(t, err)
			require.Equal(t, trained.Modules, back.Modules)
			require.Equal(t, trained.OtherBiases, back.OtherBiases)
			resumed, err := Open(eng, ck.Dir, Options{AdapterDir: dir, Layers: []int{1}})
			require.NoError(t, err)
			defer resumed.Release()
			again, err := resumed.Trained()
			require.NoError(t, err)
			require.Equal(t, trained.Modules, again.Modules)
			require.Equal(t, back.OtherBiases, again.OtherBiases)
			for k, p := range resumed.Layers[0].Projections() {
				path := hf.Prefix(1, hf.Modules[k])
				require.Equal(t, trainedBias[path], p.BiasTrainable, path)
				if !trainedBias[path] {
					continue
				}
				want := trained.OtherBiases[path]
				if mod := trained.Modules[path]; mod != nil {
					want = mod.BaseBias
				}
				require.Equal(t, ref.FromFloat32(want.Data), vktest.Download(t, p.Bias), "%s resumes with the trained bias", path)
			}
		})
	}
}

// TestFreshDoRA: a fresh DoRA adapter starts its magnitude where PEFT's
// DoraLinearLayer.update_layer does, at ‖W + s·B·A‖ per output row (‖W‖
// with lora_B zero; init_lora_weights false makes B random), computed on
// the device from a dense or an NF4 base, within one rounding to the
// dtype of the float64 norms; the layers compute the DoRA output with it,
// a step's magnitude gradients match the reference, and the trained
// magnitude is saved and read back as it is (a resumed adapter keeps it).
func TestFreshDoRA(t *testing.T) {
	for _, c := range []struct {
		name string
		d    dtype.DType
		nf4  []string
		init peft.InitWeights
	}{
		{"f32 dense", dtype.F32, nil, peft.InitWeights{Bool: true}},
		{"f32 dense init false", dtype.F32, nil, peft.InitWeights{Bool: false}},
		{"bf16 nf4", dtype.BF16, []string{"q_proj", "down_proj"}, peft.InitWeights{Bool: true}},
		{"bf16 nf4 init false", dtype.BF16, []string{"v_proj", "up_proj"}, peft.InitWeights{Bool: false}},
		{"f16 gaussian", dtype.F16, nil, peft.InitWeights{Name: "gaussian"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dev := vktest.Device(t)
			eng, err := lora.NewEngine(dev, lora.Options{})
			require.NoError(t, err)
			ck := hftest.WriteT(t, hftest.Spec{Hidden: 16, Intermediate: 24, Heads: 4, KVHeads: 2, Layers: 2, DType: c.d, NF4: c.nf4})
			pc := allLinear(2, 4)
			pc.UseDoRA, pc.InitLoRAWeights = true, c.init
			m, err := Open(eng, ck.Dir, Options{Config: pc, Layers: []int{1}, Seed: 9})
			require.NoError(t, err)
			defer m.Release()
			require.Len(t, m.Adapter.Modules, 7)
			for _, name := range c.nf4 {
				require.NotNil(t, m.Layers[0].Weights.Linear(hf.Module(name)).Weight.NF4, name)
			}
			require.Len(t, m.Params(), 21)
			require.Equal(t, "model.layers.1.self_attn.q_proj.lora_magnitude_vector", m.Params()[2].Name)

			tol := ref.Tolerance(c.d)
			rps := refLayer(ck, m.Adapter, 1)
			for k, pm := range hf.Modules {
				p := hf.Prefix(1, pm)
				mod, rp := m.Adapter.Modules[p], rps[k]
				require.Equal(t, c.d, mod.Magnitude.DType, p)
				require.Equal(t, ref.FromFloat32(mod.Magnitude.Data), vktest.Download(t, m.Modules[p].Magnitude), "%s: host and device agree", p)
				require.Same(t, m.Modules[p].Magnitude, m.Layers[0].Projections()[k].Magnitude, p)
				want := ref.DoRANorms(rp)
				vktest.ExpectClose(t, p+" magnitude", ref.FromFloat32(mod.Magnitude.Data), want, rp.Out, tol.Product)
				zeroB := !slices.ContainsFunc(mod.B.Data, func(x float32) bool { return x != 0 })
				require.Equal(t, c.init.Name == "" && c.init.Bool || c.init.Name == "gaussian", zeroB, p)
				if !zeroB {
					// ‖W‖ alone would not pass: the test tells the two apart.
					wn := make([]float64, rp.Out)
					for o := range wn {
						for j := range rp.In {
							wn[o] += rp.W[o*rp.In+j] * rp.W[o*rp.In+j]
						}
						wn[o] = math.Sqrt(wn[o])
					}
					require.Greater(t, ref.RelErr(wn, want), 10*tol.Product, p)
				}
			}

			// The layers run DoRA with it: O's output against the reference.
			rng := rand.New(rand.NewPCG(3, 4))
			l := m.Layers[0]
			const rows = 5
			z := vktest.Random(rng, c.d, rows*rps[3].In, 1)
			rec := vktest.Recorder(t, dev)
			y, so, err := l.O.Forward(rec, vktest.Upload(t, dev, c.d, z, rows, rps[3].In))
			require.NoError(t, err)
			defer y.Release()
			rec.Hold(so)
			require.NoError(t, rec.Submit())
			vktest.ExpectClose(t, "o_proj DoRA output", vktest.Download(t, y), ref.LinearForward(z, rows, rps[3]), rps[3].Out, tol.Layer)

			g, io := layerStep(t, dev, rec, m, l, rng, 6)
			wantG := refGrads(rps, io, m.Config.Activation)
			for k, pg := range g.list() {
				p := hf.Prefix(1, hf.Modules[k])
				require.NotNil(t, pg.Magnitude, p)
				vktest.ExpectClose(t, p+" dm", vktest.Download(t, pg.Magnitude), wantG[k].DMagnitude, rps[k].Out, tol.Layer)
			}
			grads, err := m.Grads([]LayerGrads{*g})
			require.NoError(t, err)
			require.Same(t, g.MLP[1].Magnitude, grads[5*3+2])
			opt, err := optim.NewAdamW(dev, m.Params(), optim.AdamWConfig{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8})
			require.NoError(t, err)
			defer opt.Release()
			require.NoError(t, opt.Step(rec, grads))
			require.NoError(t, rec.Submit())

			trained, err := m.Trained()
			require.NoError(t, err)
			for _, p := range trained.Paths() {
				require.NotEqual(t, m.Adapter.Modules[p].Magnitude.Data, trained.Modules[p].Magnitude.Data, "%s: the magnitude trains", p)
			}
			dir := filepath.Join(t.TempDir(), "adapter")
			require.NoError(t, m.Save(dir))
			back, err := peft.Load(dir)
			require.NoError(t, err)
			require.True(t, back.Config.UseDoRA)
			require.Equal(t, trained.Modules, back.Modules)
			resumed, err := Open(eng, ck.Dir, Options{AdapterDir: dir, Layers: []int{1}})
			require.NoError(t, err)
			defer resumed.Release()
			again, err := resumed.Trained()
			require.NoError(t, err)
			require.Equal(t, trained.Modules, again.Modules, "a loaded magnitude is kept, not recomputed")
		})
	}
}

// recordLayerStep records layer l's forwards (QKV and the MLP on x, O on z)
// and their backwards with the upstream gradients up (q, k, v, O's, the
// MLP's) into g; rec holds every other tensor the step makes.
func recordLayerStep(t *testing.T, rec *vk.Recorder, l *Layer, x, z *vk.Tensor, up [5]*vk.Tensor, g *LayerGrads) {
	t.Helper()
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
	dx[0], g.QKV, err = l.QKV.Backward(rec, sq, up[0], up[1], up[2])
	require.NoError(t, err)
	dx[1], g.O, err = l.O.Backward(rec, so, up[3])
	require.NoError(t, err)
	dx[2], g.MLP, err = l.MLP.Backward(rec, sm, up[4])
	require.NoError(t, err)
	for _, d := range dx {
		rec.Hold(d)
	}
}
