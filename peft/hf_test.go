package peft

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/hf"
	"github.com/vklora/vklora/hf/hftest"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/vk/vktest"
)

// TestHFAdapters: DeviceModules.Adapter plugs a PEFT adapter into package
// hf's layer loader: adapted projections get the adapter's tensors and a
// trained bias replaces the checkpoint's; the others stay plain.
func TestHFAdapters(t *testing.T) {
	f := vktest.NewFixture(t)
	d := dtype.F32
	ck := hftest.WriteT(t, hftest.Spec{ModelType: "qwen2", Layers: 1, KVHeads: 2, DType: d}) // q, k, v have biases

	c := DefaultConfig()
	c.R, c.LoRAAlpha, c.Bias = 2, 4, BiasLoRAOnly
	c.TargetModules = &ModuleSet{Names: []string{"q_proj", "v_proj"}}
	a := &Adapter{Config: c, Modules: map[string]*Module{}}
	for _, m := range []hf.Module{hf.Q, hf.V} {
		out, in := ck.Spec.Shape(string(m))
		mod := module(t, &a.Config, hf.Prefix(0, m), in, out, d)
		a.Modules[mod.Path] = mod
	}
	q := a.Modules[hf.Prefix(0, hf.Q)]
	q.BaseBias = fill("q bias", d, q.Out()) // trained and saved; v's is not

	ms, err := a.Upload(f.Dev, d)
	require.NoError(t, err)
	defer ms.Release()
	cp, err := hf.Open(ck.Dir)
	require.NoError(t, err)
	defer cp.Close()
	lw, err := cp.Layer(0, f.Dev, 0)
	require.NoError(t, err)
	defer lw.Release()

	attn, _, err := lw.Modules(func(i int, m hf.Module) (*lora.LoRALinear, error) { return ms.Adapter(hf.Prefix(i, m)) })
	require.NoError(t, err)
	dq, dv := ms[hf.Prefix(0, hf.Q)], ms[hf.Prefix(0, hf.V)]
	require.Same(t, dq.A, attn.Q.A)
	require.Same(t, dq.BaseBias, attn.Q.Bias, "the trained bias replaces the checkpoint's")
	require.True(t, attn.Q.BiasTrainable)
	require.Same(t, dv.B, attn.V.B)
	require.Same(t, lw.V.Bias, attn.V.Bias)
	require.False(t, attn.V.BiasTrainable)
	require.Nil(t, attn.K.A, "k_proj has no adapter")
	require.Equal(t, 2, attn.Q.R)
	require.Equal(t, 4.0, attn.Q.Alpha)
	none, err := ms.Adapter("model.layers.7.self_attn.q_proj")
	require.NoError(t, err)
	require.Nil(t, none)
}
