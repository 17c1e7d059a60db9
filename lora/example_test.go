package lora_test

import (
	"fmt"
	"math"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/vk"
)

// A LoRA projection Y = X·Wᵀ + s·(X·Aᵀ)·Bᵀ on the default device: open it,
// upload the frozen weight and the adapter, record, submit, read Y back.
func ExampleEngine_MatmulLoRA() {
	dev, err := vk.Open(vk.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dev.Close()
	eng, err := lora.NewEngine(dev, lora.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	// X [1, 2], W [2, 2] (out, in), lora_A [1, 2] (r = 1), lora_B [2, 1].
	x, _ := dev.TensorFrom(dtype.F32, []float32{1, 2}, 1, 2)
	w, _ := dev.TensorFrom(dtype.F32, []float32{1, 0, 0, 1}, 2, 2)
	a, _ := dev.TensorFrom(dtype.F32, []float32{1, 1}, 1, 2)
	b, _ := dev.TensorFrom(dtype.F32, []float32{1, -1}, 2, 1)
	for _, t := range []*vk.Tensor{x, w, a, b} {
		defer t.Close()
	}
	p := &lora.Projection{W: lora.Weight{Dense: w}, A: a, B: b, Scale: 0.5}

	rec, err := dev.NewRecorder()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rec.Close()
	y, err := eng.MatmulLoRA(rec, x, p, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer y.Close()
	if err := rec.Submit(); err != nil {
		fmt.Println(err)
		return
	}
	// X·Wᵀ = [1 2]; X·Aᵀ = 3; 0.5·3·Bᵀ = [1.5 -1.5].
	got, err := y.Float32()
	fmt.Println(got, err)
	// Output: [2.5 0.5] <nil>
}

// One training step's layer work for a LoRA MLP (SwiGLU, bf16): build it
// from PEFT-shaped modules, build the step's kernels (Device.Prepare),
// record the forward and the backward in one recording, submit, and get
// dX and every adapter gradient.
func ExampleMLP() {
	dev, err := vk.Open(vk.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dev.Close()
	eng, err := lora.NewEngine(dev, lora.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	const tokens, hidden, inter, r = 5, 8, 12, 3
	tensor := func(shape ...int) *vk.Tensor { // deterministic values in [-0.5, 0.5]
		v := make([]float32, shape[0]*shape[1])
		for i := range v {
			v[i] = float32(math.Sin(float64(7*i+len(v)))) / 2
		}
		t, _ := dev.TensorFrom(dtype.BF16, v, shape...)
		return t
	}
	linear := func(out, in int) *lora.LoRALinear {
		return &lora.LoRALinear{Base: lora.Weight{Dense: tensor(out, in)}, A: tensor(r, in), B: tensor(out, r), Alpha: 6, R: r}
	}
	mlp, err := lora.ApplyLoRAMLP(eng, &lora.GatedMLP{Gate: linear(inter, hidden), Up: linear(inter, hidden),
		Down: linear(hidden, inter), HiddenAct: "silu"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer mlp.Release() // the layer owns its weights
	x, gy := tensor(tokens, hidden), tensor(tokens, hidden)
	defer x.Close()
	defer gy.Close()

	// Optional: build the step's kernels in parallel first, by recording
	// the step once dry (checked, neither recorded nor run). A cold driver
	// can take seconds for each large matmul kernel.
	if err := dev.Prepare(func(rec *vk.Recorder) error {
		y, saved, err := mlp.Forward(rec, x)
		if err != nil {
			return err
		}
		rec.Hold(y)
		rec.Hold(saved)
		dx, grads, err := mlp.Backward(rec, saved, gy)
		rec.Hold(dx)
		for i := range grads {
			rec.Hold(&grads[i])
		}
		return err
	}); err != nil {
		fmt.Println(err)
		return
	}

	rec, err := dev.NewRecorder()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rec.Close()
	y, saved, err := mlp.Forward(rec, x)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer y.Close()
	defer saved.Release()
	dx, grads, err := mlp.Backward(rec, saved, gy) // dY = gy; Backward records its own barrier
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dx.Close()
	if err := rec.Submit(); err != nil {
		fmt.Println(err)
		return
	}
	for i, name := range []string{"gate", "up", "down"} {
		fmt.Println(name, "dA", grads[i].A.Shape(), "dB", grads[i].B.Shape())
		grads[i].Release()
	}
	fmt.Println("Y", y.Shape(), "dX", dx.Shape())
	// Output:
	// gate dA [3 8] dB [12 3]
	// up dA [3 8] dB [12 3]
	// down dA [3 12] dB [8 3]
	// Y [5 8] dX [5 8]
}
