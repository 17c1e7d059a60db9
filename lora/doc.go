// Package lora is the fused LoRA layers of axolotl's kernels.lora on Vulkan:
// one adapted projection (O, MatmulLoRA), the attention input projections
// (QKV) and the gated MLP (MLP: SwiGLU, GEGLU, GEGLU-tanh), each with a
// Forward that returns a saved context and a Backward that returns dX and
// the adapter gradients. The math is shared/docs/lora-math.md; package ref
// is the float64 oracle the tests compare against.
//
// # Shapes and layout
//
// PEFT conventions: X is [M, in] (batch·sequence flattened), a base weight
// W is [out, in] (dense or NF4, frozen), lora_A is [r, in], lora_B is
// [out, r] and the scale s is alpha/r, or alpha/√r with rsLoRA. A
// projection may carry the base layer's bias [out] (Projection.Bias, frozen
// like W): it is added to Y after the matmul and has no backward, so dX and
// the adapter gradients are those of the bias-free layer. Tensors are
// row-major; every doc comment states its shapes. Activations, weights and
// gradients share one storage dtype (f32, f16 or bf16); accumulation is
// fp32, and [M, r] intermediates are kept in f32. The rank is always
// contracted first: B·A and Xᵀ·G are never formed. Besides the layers the
// engine exposes its matmul (MatmulTo) and its elementwise adds: AddTo
// (dst += alpha·src, the gradient accumulation of package autograd) and
// AddBiasTo (a row bias); both compute in fp32 and round once.
//
// # Kernels
//
// Each product picks its kernel at recording time from the device's Caps:
// f16/bf16 products with outputs of at least 64×64 run on workgroup-scope
// cooperative matrices (VK_NV_cooperative_matrix2, matmul_cm2.comp), else
// on subgroup-scope ones (VK_KHR_cooperative_matrix, matmul_coopmat.comp),
// else on the scalar tiled kernel (matmul.comp). Outputs with a side of at
// most 32, the rank products X·Aᵀ, G·B, dA and dB, take the workgroup-scope
// kernel's narrow tiles where it has them, else matmul_narrow.comp. NF4
// weights at M ≥ 512 on coopmat2 devices run in dequantized column slabs
// (nf4slab.go). Split-K engages when the tiles would not fill the device.
// The VKLORA_DISABLE_* variables switch paths off for comparisons.
//
// # From a PEFT model
//
// LoRALinear mirrors a PEFT LoRA Linear (base layer and its bias, lora_A,
// lora_B, lora_alpha, r, use_rslora, disabled, merged); GetLoRAParameters
// turns it into a Projection, and ApplyLoRAQKV, ApplyLoRAO and ApplyLoRAMLP
// (or its SwiGLU/GEGLU-checking forms) build the layers from Attention and
// GatedMLP modules, choosing the activation from the model's hidden_act.
//
// # Recording and ownership
//
// Ops are recorded on a vk.Recorder and run at rec.Submit; results are valid
// after it. Temporaries are handed to rec.Hold. Outputs and gradients are
// new tensors the caller releases; saved contexts reference X (not a copy),
// so X must not change between Forward and Backward, and X is never
// written (not even by MLP's default in-place backward, which overwrites
// only its saved e and g; see MLP.KeepSaved). Every Release is idempotent.
// Package autograd chains the layers on a tape.
//
// # Errors
//
// Argument errors (shapes, dtypes, nil or released tensors, non-finite
// scales, a bias that is not 1-D [out] of the layer dtype) wrap ErrBadInput
// and name the argument and its shape; the layers and the adds find them
// before recording anything, so the engine and the recorder stay usable. ErrNotImplemented is
// reserved for PEFT features the engine lacks (dropout, DoRA, lora_B bias).
// Device errors come from package vk.
package lora
