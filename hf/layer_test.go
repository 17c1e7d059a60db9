package hf

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/hf/hftest"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/safetensors"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

func TestMain(m *testing.M) { vktest.Main(m) }

// smallChunks makes uploads stream in pieces of a few elements, so that
// every test crosses chunk seams.
func smallChunks(t *testing.T, n int) {
	old := uploadChunk
	uploadChunk = n
	t.Cleanup(func() { uploadChunk = old })
}

func openT(t *testing.T, m *hftest.Model) *Checkpoint {
	t.Helper()
	c, err := Open(m.Dir)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// download reads a device tensor back as float32.
func download(t *testing.T, x *vk.Tensor) []float32 {
	t.Helper()
	xs, err := x.Float32()
	require.NoError(t, err)
	return xs
}

func rounded(d dtype.DType, xs []float32) []float32 {
	out := make([]float32, len(xs))
	for i, x := range xs {
		out[i] = dtype.Round(d, x)
	}
	return out
}

// Every projection and bias comes up with its shape and exactly its stored
// values rounded to the device dtype, whatever the two dtypes.
func TestLayerDense(t *testing.T) {
	dev := vktest.Device(t)
	smallChunks(t, 40) // 10 f32 or 20 bf16 elements per piece
	for _, c := range []struct{ stored, device dtype.DType }{
		{dtype.BF16, dtype.BF16}, {dtype.BF16, dtype.F32}, {dtype.F32, dtype.BF16}, {dtype.F16, dtype.F32}, {dtype.F32, dtype.F16},
	} {
		t.Run(fmt.Sprintf("%s-to-%s", c.stored, c.device), func(t *testing.T) {
			m := hftest.WriteT(t, hftest.Spec{Layers: 2, Shards: 2, KVHeads: 2, DType: c.stored, AttentionBias: true, MLPBias: true})
			ck := openT(t, m)
			lw, err := ck.Layer(1, dev, c.device)
			require.NoError(t, err)
			defer lw.Release()
			require.Equal(t, 1, lw.Index)
			require.Equal(t, c.device, lw.DType)
			for _, mod := range Modules {
				l := lw.Linear(mod)
				require.Nil(t, l.Weight.NF4)
				name := Prefix(1, mod)
				out, in := m.Spec.Shape(string(mod))
				require.Equal(t, []int{out, in}, l.Weight.Dense.Shape(), mod)
				require.Equal(t, c.device, l.Weight.Dense.DType())
				require.Equal(t, rounded(c.device, m.Values[name+".weight"]), download(t, l.Weight.Dense), mod)
				require.Equal(t, []int{out}, l.Bias.Shape())
				require.Equal(t, rounded(c.device, m.Values[name+".bias"]), download(t, l.Bias), mod)
			}
			require.NotZero(t, lw.Bytes())
			lw.Release()
			lw.Release()
			require.Zero(t, lw.Bytes())
		})
	}
}

// Layer reads exactly that layer's projection tensors, in pieces no larger
// than the chunk: never the whole shard, and never two tensors at once.
func TestLayerReadsOneTensorAtATime(t *testing.T) {
	dev := vktest.Device(t)
	const chunk = 64
	smallChunks(t, chunk)
	m := hftest.WriteT(t, hftest.Spec{ModelType: "qwen2", Layers: 3, Shards: 2, DType: dtype.F32})
	reads := countReads(t)
	ck := openT(t, m)
	reads()
	lw, err := ck.Layer(1, dev, dtype.F32)
	require.NoError(t, err)
	defer lw.Release()
	var want int64
	for _, mod := range Modules {
		for _, s := range []string{".weight", ".bias"} {
			if info, _, ok := ck.Info(Prefix(1, mod) + s); ok {
				want += info.Size
			}
		}
	}
	got := reads()
	require.Equal(t, want, sum(got), "bytes read for layer 1")
	for _, n := range got {
		require.LessOrEqual(t, n, int64(chunk))
	}
}

func TestLayerQwen2Biases(t *testing.T) {
	dev := vktest.Device(t)
	m := hftest.WriteT(t, hftest.Spec{ModelType: "qwen2", Layers: 1, KVHeads: 1})
	lw, err := openT(t, m).Layer(0, dev, 0)
	require.NoError(t, err)
	defer lw.Release()
	require.Equal(t, dtype.BF16, lw.DType, "torch_dtype is the default")
	for _, mod := range Modules {
		require.Equal(t, mod == Q || mod == K || mod == V, lw.Linear(mod).Bias != nil, mod)
	}
	require.Equal(t, []int{4}, lw.K.Bias.Shape())
}

// NF4 projections load through quant.LoadNF4, even with their tensors
// split over two shards, and reach the device exactly as quant.Upload puts
// the written weight there.
func TestLayerNF4(t *testing.T) {
	dev := vktest.Device(t)
	for _, dq := range []bool{false, true} {
		t.Run(fmt.Sprintf("double-quant=%v", dq), func(t *testing.T) {
			m := hftest.WriteT(t, hftest.Spec{Layers: 2, Shards: 5, Hidden: 32, Intermediate: 64, NF4: []string{"q_proj", "v_proj", "down_proj"}, DoubleQuant: dq})
			straddles := false // some NF4 weight of layer 1 lies in two shards
			for prefix := range m.NF4 {
				if !strings.HasPrefix(prefix, "model.layers.1.") {
					continue
				}
				files := map[string]bool{}
				for name, file := range m.Where {
					if strings.HasPrefix(name, prefix+".weight") {
						files[file] = true
					}
				}
				straddles = straddles || len(files) > 1
			}
			require.True(t, straddles)
			ck := openT(t, m)
			lw, err := ck.Layer(1, dev, dtype.BF16)
			require.NoError(t, err)
			defer lw.Release()
			for _, mod := range Modules {
				l := lw.Linear(mod)
				prefix := Prefix(1, mod)
				w, nf4 := m.NF4[prefix]
				if !nf4 {
					require.Nil(t, l.Weight.NF4, mod)
					require.NotNil(t, l.Weight.Dense, mod)
					continue
				}
				require.Nil(t, l.Weight.Dense, mod)
				require.NoError(t, l.Weight.NF4.Check())
				out, in := m.Spec.Shape(string(mod))
				require.Equal(t, [2]int{out, in}, l.Weight.NF4.Shape())
				want, err := quant.Upload(dev, w)
				require.NoError(t, err)
				for _, p := range [][2]*vk.Tensor{{l.Weight.NF4.Packed, want.Packed}, {l.Weight.NF4.State, want.State}} {
					g, err := p[0].RawBytes()
					require.NoError(t, err)
					x, err := p[1].RawBytes()
					require.NoError(t, err)
					require.Equal(t, x, g, mod)
				}
				want.Release()
			}
			// A layer dtype other than the quant state's is refused, and
			// what was uploaded before it is freed (vktest checks leaks).
			_, err = ck.Layer(0, dev, dtype.F32)
			require.ErrorContains(t, err, `tensor "model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4": the NF4 weight dequantizes to bf16, but the layer is loaded as f32`)
			require.ErrorIs(t, err, lora.ErrBadInput)
		})
	}
}

// A quant state that contradicts the config is refused by name.
func TestLayerNF4BadState(t *testing.T) {
	dev := vktest.Device(t)
	m := hftest.WriteT(t, hftest.Spec{Layers: 1, NF4: []string{"gate_proj", "up_proj"}})
	// Swap gate's quant state for one of the transposed shape (the same
	// number of codes, so the headers agree with the config).
	f, err := safetensors.ReadFile(m.Path(SingleFile))
	require.NoError(t, err)
	js := `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [16, 24]}`
	require.NoError(t, f.Put("model.layers.0.mlp.gate_proj.weight.quant_state.bitsandbytes__nf4", "U8", []int{len(js)}, []byte(js)))
	require.NoError(t, safetensors.WriteFile(m.Path(SingleFile), f))
	ck := openT(t, m)
	_, err = ck.Layer(0, dev, 0)
	require.ErrorContains(t, err, `quant_state shape [16 24], want [24 16]`)
	require.ErrorIs(t, err, ErrBadCheckpoint)
}

func TestLayerErrors(t *testing.T) {
	dev := vktest.Device(t)
	m := hftest.WriteT(t, hftest.Spec{Layers: 2})
	ck := openT(t, m)
	for _, c := range []struct {
		i   int
		dev *vk.Device
		d   dtype.DType
		err string
	}{
		{-1, dev, 0, "index -1 outside [0, 2)"},
		{2, dev, 0, "index 2 outside [0, 2)"},
		{0, nil, 0, "device is nil"},
		{0, dev, dtype.U8, "device dtype u8"},
	} {
		_, err := ck.Layer(c.i, c.dev, c.d)
		require.ErrorContains(t, err, c.err)
		require.ErrorIs(t, err, lora.ErrBadInput)
	}
	_, err := ck.Upload(dev, "nope", 0)
	require.ErrorContains(t, err, `no tensor "nope"`)
	_, err = ck.Upload(dev, "model.embed_tokens.weight", dtype.U8)
	require.ErrorIs(t, err, lora.ErrBadInput)
	require.NoError(t, ck.Close())
	_, err = ck.Layer(0, dev, 0)
	require.ErrorContains(t, err, "is closed")
	_, err = ck.Upload(dev, "model.embed_tokens.weight", 0)
	require.ErrorContains(t, err, "is closed")
	var nilCk *Checkpoint
	_, err = nilCk.Layer(0, dev, 0)
	require.ErrorIs(t, err, lora.ErrBadInput)
	require.NoError(t, nilCk.Close())
}

func TestUploadTensor(t *testing.T) {
	dev := vktest.Device(t)
	smallChunks(t, 6)
	m := hftest.WriteT(t, hftest.Spec{Layers: 1, DType: dtype.F16})
	ck := openT(t, m)
	x, err := ck.Upload(dev, "model.embed_tokens.weight", 0)
	require.NoError(t, err)
	defer x.Release()
	require.Equal(t, dtype.F16, x.DType())
	require.Equal(t, []int{32, 16}, x.Shape())
	require.Equal(t, m.Values["model.embed_tokens.weight"], download(t, x))
}

// The built modules feed lora's Apply functions, and the engine computes
// with them what the checkpoint's weights give on the host: Y = X·Wᵀ +
// bias + s·(X·Aᵀ)·Bᵀ for the adapted q_proj of a Qwen2 layer.
func TestModulesApply(t *testing.T) {
	f := vktest.NewFixture(t)
	m := hftest.WriteT(t, hftest.Spec{ModelType: "qwen2", Layers: 1, KVHeads: 2, DType: dtype.F32})
	lw, err := openT(t, m).Layer(0, f.Dev, 0)
	require.NoError(t, err)
	defer lw.Release()

	const r, rows = 2, 3
	out, in := m.Spec.Shape("q_proj")
	av, bv := f.Random(dtype.F32, r*in, 0.5), f.Random(dtype.F32, out*r, 0.5)
	ad := &lora.LoRALinear{A: f.Upload(dtype.F32, av, r, in), B: f.Upload(dtype.F32, bv, out, r), Alpha: 4, R: r}
	attn, mlp, err := lw.Modules(AdapterMap(map[Module]*lora.LoRALinear{Q: ad}))
	require.NoError(t, err)
	require.Nil(t, ad.Base.Dense, "the adapter is copied, not filled in")
	require.Same(t, lw.Q.Weight.Dense, attn.Q.Base.Dense)
	require.Same(t, lw.Q.Bias, attn.Q.Bias)
	require.Nil(t, attn.O.Bias)
	require.Equal(t, "silu", mlp.HiddenAct)

	eng, err := lora.NewEngine(f.Dev, lora.Options{})
	require.NoError(t, err)
	qkv, err := lora.ApplyLoRAQKV(eng, attn)
	require.NoError(t, err)
	_, err = lora.ApplyLoRAO(eng, attn)
	require.NoError(t, err)
	gm, err := lora.ApplyLoRAMLP(eng, mlp)
	require.NoError(t, err)
	require.Equal(t, lora.SwiGLU, gm.Act)

	xv := f.Random(dtype.F32, rows*in, 1)
	x := f.Upload(dtype.F32, xv, rows, in)
	rec := f.Recorder()
	y, err := eng.MatmulLoRA(rec, x, qkv.Q, nil)
	require.NoError(t, err)
	f.Keep(y)
	require.NoError(t, rec.Submit())

	w, bias := m.Values["model.layers.0.self_attn.q_proj.weight"], m.Values["model.layers.0.self_attn.q_proj.bias"]
	s := lora.LoRAScale(4, r, false)
	want := make([]float64, rows*out)
	for i := 0; i < rows; i++ {
		xa := make([]float64, r)
		for k := 0; k < r; k++ {
			for j := 0; j < in; j++ {
				xa[k] += xv[i*in+j] * av[k*in+j]
			}
		}
		for o := 0; o < out; o++ {
			v := float64(bias[o])
			for j := 0; j < in; j++ {
				v += xv[i*in+j] * float64(w[o*in+j])
			}
			for k := 0; k < r; k++ {
				v += s * xa[k] * bv[o*r+k]
			}
			want[i*out+o] = v
		}
	}
	vktest.ExpectClose(t, "q_proj forward", f.Download(y), want, out, 1e-5)
}

func TestModulesGemmaActivation(t *testing.T) {
	dev := vktest.Device(t)
	// Gemma's first configs said "gelu"; transformers runs gelu_pytorch_tanh.
	m := hftest.WriteT(t, hftest.Spec{ModelType: "gemma", Layers: 1, HeadDim: 4, Config: map[string]any{"hidden_act": "gelu"}})
	lw, err := openT(t, m).Layer(0, dev, 0)
	require.NoError(t, err)
	defer lw.Release()
	_, mlp, err := lw.Modules(nil)
	require.NoError(t, err)
	require.Equal(t, "gelu_pytorch_tanh", mlp.HiddenAct)
	eng, err := lora.NewEngine(dev, lora.Options{})
	require.NoError(t, err)
	gm, err := lora.ApplyLoRAMLPGEGLU(eng, mlp)
	require.NoError(t, err)
	require.Equal(t, lora.GEGLUTanh, gm.Act)
}

func TestModulesErrors(t *testing.T) {
	dev := vktest.Device(t)
	m := hftest.WriteT(t, hftest.Spec{Layers: 1})
	lw, err := openT(t, m).Layer(0, dev, 0)
	require.NoError(t, err)
	defer lw.Release()
	_, _, err = lw.Modules(AdapterMap(map[Module]*lora.LoRALinear{Up: {Base: lw.Up.Weight}}))
	require.ErrorContains(t, err, "layer 0 up_proj: the adapter carries a base weight")
	_, _, err = lw.Modules(func(int, Module) (*lora.LoRALinear, error) { return nil, fmt.Errorf("no adapter file") })
	require.ErrorContains(t, err, "layer 0 q_proj: adapter: no adapter file")
	var nilLW *LayerWeights
	_, _, err = nilLW.Modules(nil)
	require.ErrorIs(t, err, lora.ErrBadInput)
	lw.Release()
	_, _, err = lw.Modules(nil)
	require.ErrorContains(t, err, "weight is nil or released")
}
