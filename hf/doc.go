// Package hf loads the base weights of a Hugging Face transformers
// checkpoint directory onto the device, one decoder layer at a time, for
// fine-tuning with package lora. docs/HF.md is the longer account.
//
// # What is read
//
// ReadConfig parses config.json for the architectures whose decoder layers
// are the engine's (Llama, Qwen2, Gemma, Gemma 2, Mistral), filling in the
// defaults transformers' config classes give and resolving the gate
// activation as transformers does (Gemma ignores hidden_act). Open reads
// that config and the headers of model.safetensors, or of every shard
// model.safetensors.index.json lists, and checks every decoder layer's
// projections against the config from the headers alone: a missing,
// truncated or inconsistent file fails at Open, naming the file and the
// tensor, before any weight is read.
//
// # Lazily, one tensor at a time
//
// No tensor bytes are read at Open (safetensors.Open reads only a file's
// header). Checkpoint.Layer uploads one layer's seven projections, one
// after the other: a dense weight is streamed from the file to a device
// tensor in pieces of a few MiB, converted to the layer dtype on the way,
// so a whole tensor never sits in Go memory, let alone a checkpoint; a
// bitsandbytes NF4 weight (4-bit codes and scales, an eighth of the dense
// size) is read into memory, checked by quant.LoadNF4 and uploaded as a
// quant.DeviceNF4. Tensors outside the layers (embeddings, norms, lm_head)
// are reachable by name through Upload and ReadTensor.
//
// # Names
//
// Layer i's projections are model.layers.{i}.self_attn.{q,k,v,o}_proj and
// model.layers.{i}.mlp.{gate,up,down}_proj, each with .weight [out, in] and,
// where the architecture has one, .bias [out] (Config.HasBias). Prefix
// builds the names and Config.Shape the shapes.
//
// # Adapters
//
// LayerWeights.Modules builds the lora.Attention and lora.GatedMLP that
// lora.ApplyLoRAQKV, ApplyLoRAO and ApplyLoRAMLP take, asking an Adapters
// callback for each projection's LoRA adapter, so that the adapter format
// (package peft) stays out of this package.
//
// # Writing a merged checkpoint
//
// Checkpoint.WriteMerged writes a new dense checkpoint directory with the
// adapters merged into the projections on the device
// (lora.Engine.MergedWeight; NF4 weights are dequantized and written
// dense), config.json without quantization_config, and every other tensor
// copied and converted to the dtype, one tensor at a time through
// safetensors.Writer. It writes into a temporary directory that takes the
// final name only when complete (docs/MERGE.md).
//
// # Errors and ownership
//
// Errors name the file and the tensor or config field at fault and wrap
// ErrBadCheckpoint (malformed or self-contradicting), ErrUnsupported (a
// checkpoint this package does not load: another model_type, GPTQ, 8-bit,
// FP4, pickle weights) or lora.ErrBadInput (a bad argument). A Checkpoint
// holds open files until Close; LayerWeights holds device memory until
// Release. Both are idempotent.
package hf
