// Package peft loads and saves Hugging Face PEFT LoRA adapters in the
// format PEFT 0.21's save_pretrained writes and PeftModel.from_pretrained
// reads, and moves their tensors to and from the engine (package lora).
//
// # The format
//
// An adapter is a directory of two files:
//
//	adapter_config.json        LoraConfig.to_dict() as json.dumps(indent=2, sort_keys=True)
//	adapter_model.safetensors  the adapter's tensors, metadata {"format": "pt"}
//
// Tensor keys are the PeftModel's parameter names without the adapter name
// ("default"). For the Linear at module path P (the transformers name, e.g.
// "model.layers.0.self_attn.q_proj"):
//
//	base_model.model.P.lora_A.weight         [r, in]
//	base_model.model.P.lora_B.weight         [out, r]
//	base_model.model.P.lora_B.bias           [out]   lora_bias
//	base_model.model.P.lora_magnitude_vector [out]   use_dora (no ".weight")
//	base_model.model.P.base_layer.bias       [out]   bias "all" or "lora_only"
//	base_model.model.Q.bias                  any     bias "all": every other bias of the model
//
// lora_A and lora_B have these shapes for every Linear, fan_in_fan_out
// (Conv1D) included: only the base weight is stored transposed there.
// Each module's r and lora_alpha are the config's r and lora_alpha unless
// a rank_pattern or alpha_pattern key matches; the scale is alpha/r, or
// alpha/√r with use_rslora (Module.Scale, Config.Scale).
//
// # Matching, as PEFT does it
//
// A pattern key K matches path P when the regular expression (.*\.)?(K)$
// matches P from its start (PEFT's get_pattern_key), so "q_proj" matches
// every q_proj and "model.layers.0.self_attn.q_proj" one of them; the
// first matching key in file order wins, and rank_pattern and alpha_pattern
// are looked up separately. target_modules as a list selects a path equal
// to a name or ending in "."+name (then layers_to_transform and
// layers_pattern filter suffix matches by layer index); as a string it is a
// regular expression the whole path must match. exclude_modules follows the
// same two forms and wins. Go's RE2 runs the expressions; Python-only
// syntax is reported, never approximated.
//
// # What is refused
//
// Load checks every key and tensor and refuses, naming the key or tensor
// and the file: with lora.ErrNotImplemented, unknown config keys
// (Options.AllowUnknownKeys makes them warnings), keys that turn on
// features the engine lacks (modules_to_save, target_parameters,
// layer_replication, use_qalora, trainable tokens, Megatron, LoRA-GA,
// aLoRA, VeLoRA, MonteCLoRA, BD-LoRA, Arrow, KaSA, and initialisations
// that rewrite the base weight: PiSSA, OLoRA, CorDA, LoftQ), Embedding
// LoRA layers and whole saved modules; with lora.ErrBadInput, what PEFT
// itself refuses or cannot mean: use_dora with lora_bias, tensors of the
// wrong shape (a Conv layer's included), tensors of modules the config
// does not target, malformed JSON or safetensors. No input makes it panic
// or allocate more than the files promise.
//
// # Round trips
//
// Tensors keep their stored dtype (F32, F16 or BF16) and are widened to
// float32 exactly, NaN payloads included, so Save(Load(dir)) writes back
// the same tensor bytes, and for a config PEFT wrote the same JSON bytes;
// Load(Save(a)) equals a.
//
// # On the device
//
// Adapter.Upload (or Module.Upload) puts the tensors on a device in the
// base weights' dtype. DeviceModule.LoRALinear builds the engine's
// lora.LoRALinear over a base weight; DeviceModules.Adapter gives the same
// layer without its base, as package hf's layer loader asks for it:
//
//	ms, err := a.Upload(dev, dtype.BF16)
//	attn, mlp, err := lw.Modules(func(i int, m hf.Module) (*lora.LoRALinear, error) {
//		return ms.Adapter(hf.Prefix(i, m))
//	})
//
// After training, DeviceModules.Download returns the adapter with the
// trained tensors, each rounded to its stored dtype, ready for Save.
package peft
