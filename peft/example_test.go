package peft_test

import (
	"fmt"

	"github.com/vklora/vklora/peft"
)

// Load a PEFT LoRA adapter and list its modules with the rank, alpha and
// scale PEFT gives each: r 4 and lora_alpha 8 by default, rank_pattern
// sets layer 1's q_proj to rank 2 and alpha_pattern every v_proj to 16.
func ExampleLoad() {
	a, err := peft.Load("testdata/llama-lora-f32")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(a.Config.TaskType, a.Config.TargetModules.Names)
	for _, p := range a.Paths() {
		m := a.Modules[p]
		fmt.Printf("%s r=%d alpha=%g scale=%g A%v B%v %v\n", p, m.R, m.Alpha, m.Scale, m.A.Shape, m.B.Shape, m.A.DType)
	}
	// Output:
	// CAUSAL_LM [v_proj q_proj]
	// model.layers.0.self_attn.q_proj r=4 alpha=8 scale=2 A[4 8] B[8 4] f32
	// model.layers.0.self_attn.v_proj r=4 alpha=16 scale=4 A[4 8] B[4 4] f32
	// model.layers.1.self_attn.q_proj r=2 alpha=8 scale=4 A[2 8] B[8 2] f32
	// model.layers.1.self_attn.v_proj r=4 alpha=16 scale=4 A[4 8] B[4 4] f32
}
