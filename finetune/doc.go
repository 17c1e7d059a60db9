// Package finetune puts a Hugging Face checkpoint and a PEFT LoRA adapter on
// the device in one call, as the engine's layers ready for a training step:
// what PeftModel.from_pretrained(model, dir, is_trainable=True) and
// get_peft_model(model, LoraConfig(...)) give a PyTorch user. It wires
// package hf (the frozen base, one decoder layer at a time), package peft
// (the adapter's format and PEFT's rules for ranks, scales and targets),
// package lora (the fused QKV, O and gated-MLP layers) and package optim
// (the parameter list AdamW takes); docs/FINETUNE.md is the longer account.
//
//	m, err := finetune.Open(eng, "/models/llama", finetune.Options{AdapterDir: "out/checkpoint-100"})
//	defer m.Release()
//	opt, err := optim.NewAdamW(dev, m.Params(), cfg)
//	for _, l := range m.Layers {
//		q, k, v, sq, err := l.QKV.Forward(rec, x) // l.O, l.MLP likewise
//		// ... loss gradients gq, gk, gv ...
//		dx, gqkv, err := l.QKV.Backward(rec, sq, gq, gk, gv)
//	}
//	grads, err := m.Grads(...)                 // in Params order
//	err = opt.Step(rec, grads)
//	err = m.Save("out/checkpoint-200")         // peft.Save of the trained tensors
//
// # Fresh adapters
//
// NewAdapter is get_peft_model's initialisation: a module for every
// projection of the chosen layers that the config targets, lora_A drawn as
// PEFT draws it (init_lora_weights true: kaiming-uniform, bound 1/√in;
// "gaussian": normal with std 1/r; false: nn.Linear's default for lora_A
// and lora_B) and lora_B zero, from a seed. A config whose target_modules
// is null gets PEFT's default for the architecture (q_proj and v_proj for
// every family package hf reads), and "all-linear" the seven projections,
// written out so that PEFT loads the saved adapter onto the same modules.
//
// # Shapes, dtypes and ownership
//
// The layers run in one dtype (Options.DType, default the checkpoint's);
// the adapter is uploaded in it. A fresh adapter is stored in that dtype,
// a loaded one keeps its stored dtypes when saved (peft.DeviceModules
// rounds back). The Model owns the base weights (hf.LayerWeights) and the
// adapter's device tensors (peft.DeviceModules); its layers borrow them, and
// Release frees everything once. The optimizer updates the adapter's
// tensors in place, so Save writes what the layers compute with.
//
// # What is refused
//
// Errors wrap lora.ErrBadInput (arguments, or an adapter that does not fit
// the checkpoint: a module of no loaded projection, a lora_A or lora_B of
// the wrong shape) or lora.ErrNotImplemented: trained base biases (bias
// "all" or "lora_only"), whose gradients the Model does not collect;
// fan_in_fan_out, which no checkpoint package hf reads has; a fresh DoRA
// adapter, whose magnitude PEFT starts at the base weight's row norms.
// Nothing is allocated when an error is returned.
package finetune
