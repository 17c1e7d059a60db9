package finetune_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/finetune"
	"github.com/vklora/vklora/hf/hftest"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/optim"
	"github.com/vklora/vklora/peft"
	"github.com/vklora/vklora/vk"
)

// Attach a fresh LoRA adapter (r 4, alpha 8, on q_proj and v_proj) to the
// first decoder layer of a checkpoint, hand its parameters to AdamW and
// save it as PEFT does; the checkpoint is a tiny random one written by
// hf/hftest.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "finetune-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	if _, err := hftest.Write(dir, hftest.Spec{Layers: 2, DType: dtype.BF16}); err != nil {
		fmt.Println(err)
		return
	}
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

	cfg := peft.DefaultConfig() // target_modules null: PEFT's q_proj and v_proj
	cfg.R, cfg.LoRAAlpha = 4, 8
	m, err := finetune.Open(eng, dir, finetune.Options{Config: &cfg, Layers: []int{0}, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Release()
	opt, err := optim.NewAdamW(dev, m.Params(), optim.DefaultAdamWConfig())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer opt.Release()
	for _, p := range opt.Params() {
		fmt.Println(p.Name, p.Tensor.Shape(), p.Tensor.DType())
	}
	fmt.Println("q scale:", m.Layers[0].QKV.Q.Scale)

	out := filepath.Join(dir, "adapter")
	if err := m.Save(out); err != nil {
		fmt.Println(err)
		return
	}
	a, err := peft.Load(out)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("saved:", a.Paths(), a.Config.TargetModules.Names)
	// Output:
	// model.layers.0.self_attn.q_proj.lora_A.weight [4 16] bf16
	// model.layers.0.self_attn.q_proj.lora_B.weight [16 4] bf16
	// model.layers.0.self_attn.v_proj.lora_A.weight [4 16] bf16
	// model.layers.0.self_attn.v_proj.lora_B.weight [16 4] bf16
	// q scale: 2
	// saved: [model.layers.0.self_attn.q_proj model.layers.0.self_attn.v_proj] [q_proj v_proj]
}
