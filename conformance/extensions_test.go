package conformance

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk/vktest"
)

// A committed QKV case extended with every PEFT extension (q: DoRA with
// dropout, k: lora_B bias and a trainable base bias, v: dropout) and its
// expected values recomputed by the float64 reference: the loader reads
// the extension keys and the runner feeds them to the layers, the case's
// own masks included, and names every extra gradient.
func TestExtensionsOnDevice(t *testing.T) {
	f := mustRead(t, "lora_qkv-bf16-none-16x64x64_32-r8-1.safetensors")
	c0, err := FromFile(f)
	require.NoError(t, err)
	d := c0.DType
	rng := rand.New(rand.NewPCG(7, 11))
	x := f64(c0.Inputs["X"].Data)
	m := c0.Inputs["X"].Shape[0]
	rps := map[string]*ref.Proj{}
	put := func(name string, shape []int, xs []float64) []float64 {
		xs = ref.RoundTo(d, xs)
		require.NoError(t, f.PutFloat32(name, d, shape, ref.ToFloat32(xs)))
		return xs
	}
	for _, n := range c0.Projections {
		p := c0.Proj[n]
		rp := &ref.Proj{W: f64(p.Dense()), A: f64(p.A.Data), B: f64(p.B.Data), Out: p.Out(), In: p.In(), R: p.Rank(), S: p.Scale}
		rps[n] = rp
		for _, k := range []string{"dropout", "lora_bias", "dora", "bias"} {
			f.Metadata[k+"."+n] = map[string]string{"dropout": "0.0", "bias": "none"}[k]
			if f.Metadata[k+"."+n] == "" {
				f.Metadata[k+"."+n] = "0"
			}
		}
		mask := func(pr float64) {
			rp.P, rp.Mask = pr, make([]float64, m*rp.In)
			b := make([]byte, len(rp.Mask))
			for i := range b {
				if rng.Float64() >= pr {
					b[i], rp.Mask[i] = 1, 1
				}
			}
			require.NoError(t, f.Put(n+".dropout_mask", "U8", []int{m, rp.In}, b))
			f.Metadata["dropout."+n] = fmt.Sprint(pr)
		}
		switch n {
		case "q":
			mask(0.2)
			mag := ref.DoRANorms(rp)
			for o := range mag {
				mag[o] *= 0.6 + 0.8*rng.Float64()
			}
			rp.Magnitude = put(n+".lora_magnitude", []int{rp.Out}, mag)
			f.Metadata["dora."+n] = "1"
		case "k":
			rp.LoRABias = put(n+".lora_B.bias", []int{rp.Out}, ref.Random(rng, rp.Out, 1))
			rp.Bias = put(n+".bias", []int{rp.Out}, ref.Random(rng, rp.Out, 1))
			rp.BiasTrainable = true
			f.Metadata["lora_bias."+n], f.Metadata["bias."+n] = "1", "trainable"
		case "v":
			mask(0.35)
		}
	}
	f.Metadata["dropout_mask"] = "per_projection"
	gq, gk, gv := f64(c0.Inputs["grad.Q"].Data), f64(c0.Inputs["grad.K"].Data), f64(c0.Inputs["grad.V"].Data)
	wq, wk, wv := ref.QKVForward(x, m, rps["q"], rps["k"], rps["v"])
	wdx, dq, dk, dv := ref.QKVBackward(x, gq, gk, gv, m, rps["q"], rps["k"], rps["v"])
	expect := func(key string, xs []float64, shape ...int) {
		require.NoError(t, f.PutFloat32("expect."+key, dtype.F32, shape, ref.ToFloat32(xs)))
		f.Metadata["tol.expect."+key] = fmt.Sprint(ref.Tolerance(d).Layer)
		f.Metadata["torch_err.expect."+key] = "0"
	}
	q, kv, in, r := rps["q"].Out, rps["k"].Out, rps["q"].In, rps["q"].R
	expect("Q", wq, m, q)
	expect("K", wk, m, kv)
	expect("V", wv, m, kv)
	expect("grad.X", wdx, m, in)
	for n, g := range map[string]ref.Grads{"q": dq, "k": dk, "v": dv} {
		expect("grad."+n+".lora_A", g.DA, r, in)
		expect("grad."+n+".lora_B", g.DB, rps[n].Out, r)
	}
	expect("grad.q.lora_magnitude", dq.DMagnitude, q)
	expect("grad.k.lora_B.bias", dk.DLoRABias, kv)
	expect("grad.k.bias", dk.DBias, kv)

	c, err := FromFile(f)
	require.NoError(t, err)
	require.Len(t, c.Expect, 4+6+3)
	eng, err := lora.NewEngine(vktest.Device(t), lora.Options{})
	require.NoError(t, err)
	requirePass(t, eng, c)
}

func f64(xs []float32) []float64 { return ref.FromFloat32(xs) }
