package lora_test

import (
	"fmt"

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
