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
// # Trained base biases
//
// PEFT's bias "lora_only" trains the base bias of every adapted projection,
// "all" every bias of the model: here the biases of the seven projections
// of the loaded layers, adapted or not. A bias the adapter carries (saved
// by PEFT) is used; otherwise it starts at the checkpoint's. Either way it
// is a copy the Model owns (in peft.DeviceModule.BaseBias, or
// Model.OtherBiases for a projection without adapter), so the layer's own
// stays frozen. Params lists it after the projection's adapter tensors as
// "P.base_layer.bias" (adapted) or "P.bias" (not), Grads takes
// lora.ProjGrad.Bias, and Save writes it under those keys, as
// save_pretrained does. A projection without a bias (every one of Llama's,
// by default) has nothing to train, as in PEFT.
//
// # Fresh DoRA
//
// With use_dora Load starts each fresh module's magnitude where PEFT's
// DoraLinearLayer.update_layer does, at the row norms ‖W + s·B·A‖ of the
// base weight with the initial low-rank term (‖W‖ when lora_B is zero, as
// after init true or "gaussian"), computed on the device (an NF4 weight is
// dequantized for it) and rounded to the adapter's dtype. NewAdapter, which
// has no weights, refuses use_dora; a loaded adapter keeps its saved
// magnitude.
//
// # Shapes, dtypes and ownership
//
// The layers run in one dtype (Options.DType, default the checkpoint's);
// the adapter is uploaded in it. A fresh adapter is stored in that dtype,
// a loaded one keeps its stored dtypes when saved (peft.DeviceModules
// rounds back). The Model owns the base weights (hf.LayerWeights), the
// adapter's device tensors (peft.DeviceModules) and the trained biases of
// projections without adapter (OtherBiases); its layers borrow them, and
// Release frees everything once. The optimizer updates the adapter's
// tensors in place, so Save writes what the layers compute with.
//
// # What is refused
//
// Errors wrap lora.ErrBadInput (arguments, or an adapter that does not fit
// the checkpoint: a module of no loaded projection, a lora_A or lora_B of
// the wrong shape, a trained bias of a projection the checkpoint gives
// none) or lora.ErrNotImplemented: fan_in_fan_out, which no checkpoint
// package hf reads has, and initialisations other than true, false and
// "gaussian" for a fresh adapter. Nothing is allocated when an error is
// returned.
package finetune
