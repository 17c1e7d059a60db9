// Package lora is the fused LoRA layers of axolotl's kernels.lora on Vulkan:
// one adapted projection (O, MatmulLoRA), the attention input projections
// (QKV) and the gated MLP (MLP: SwiGLU, GEGLU, GEGLU-tanh), each with a
// Forward that returns a saved context and a Backward that returns dX and
// the adapter gradients. The math is docs/LORA-MATH.md; package ref is
// the float64 oracle the tests compare against.
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
// The layers validate their arguments, then record each product and
// elementwise step through package kernels (Engine.Kernels), which picks
// the kernel from the device's capabilities: the workgroup-scope or
// subgroup-scope cooperative-matrix kernels, the narrow kernel for the
// rank products, NF4 slabs, or the scalar tiled kernel, with split-K where
// the output is small. The path of X through MLP.Forward is lora (the
// layer's algebra) → kernels (plan and record) → vk (dispatch) → the
// shader. NewEngine's Options switch paths off for comparisons.
//
// # From a PEFT model
//
// LoRALinear mirrors a PEFT LoRA Linear (base layer and its bias, lora_A,
// lora_B, lora_alpha, r, use_rslora, disabled, merged); GetLoRAParameters
// turns it into a Projection, and ApplyLoRAQKV, ApplyLoRAO and ApplyLoRAMLP
// (or its SwiGLU/GEGLU-checking forms) build the layers from Attention and
// GatedMLP modules, choosing the activation from the model's hidden_act.
//
// # Merging
//
// Engine.Merge folds a layer's adapter into its dense base weight and
// bias in place, as PEFT's merge does: W + s·B·A, for DoRA c ⊙ (W + s·B·A)
// with c = m/‖W + s·B·A‖ per output row, and b + s·b_B. It sets
// LoRALinear.Merged, so the layer then runs as the plain base matmul;
// Unmerge takes the adapter out again, dividing a DoRA weight by the
// factor Merge kept in LoRALinear.DoRAFactor. MergedWeight writes the
// merged weight and bias to new tensors and leaves the layer alone; it
// also takes an NF4 base, which it dequantizes on the device first
// (Merge refuses one). The product s·B·A is a rank-r matmul accumulated
// in f32 and the merged weight is rounded once to the dtype.
// docs/MERGE.md has the details, and package hf writes a whole merged
// checkpoint (Checkpoint.WriteMerged).
//
// # Recording and ownership
//
// Ops are recorded on a vk.Recorder and run at rec.Submit; results are valid
// after it. Temporaries are handed to rec.Hold. Outputs and gradients are
// new tensors the caller releases; saved contexts reference X (not a copy),
// so X must not change between Forward and Backward, and X is never
// written (not even by MLP's default in-place backward, which overwrites
// only its saved e and g; see MLP.KeepSaved). Every Release is idempotent.
// Each Backward records the barrier it needs first, so a Forward and its
// Backward may share one recording with nothing in between. An output that
// shares memory with an input (MatmulLoRA into X, say) is refused with
// ErrBadInput: the kernels read inputs while they write outputs. Reading a
// result before its recording was submitted returns vk.ErrPending.
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
//
// # Adding an op
//
// A new layer feature touches four places; DoRA is the worked outline.
//
//  1. The math, forward and backward, goes into docs/LORA-MATH.md and the
//     float64 oracle: package ref (for DoRA, ref.Proj gains the magnitude
//     m and the forward scales the base and LoRA terms by m/‖W + s·B·A‖
//     per output row; its backward gives dm). The ref tests check it
//     against finite differences.
//  2. The layer algebra goes into this package: the fields on Projection
//     and LoRALinear (Magnitude), their validation in projection.go
//     (ErrBadInput naming the argument and shapes), and the steps in
//     linear.go — for DoRA the row norm from ‖W_o‖², W·Aᵀ and B·(A·Aᵀ)·Bᵀ,
//     all rank-r products that Engine.Kernels().Gemm already runs, so no
//     [out, in] matrix is formed.
//  3. A step no existing kernel does (for DoRA the per-row rescale, for
//     dropout the mask generated inside the kernel that reads X) becomes a
//     shader: a key type or a key field in shaders/keys.go, its push
//     struct in shaders/push.go, rows in shaders/variants.go, the GLSL
//     source, `make shaders`; then a Dispatcher method in package kernels
//     that validates and records it, beside add.go and gated.go. A new
//     matmul kernel is instead one more entry of kernels' candidate list,
//     with its predicate.
//  4. Tests: a table row in layers_test.go (odd shapes, rank not a power
//     of two, s ≠ 1, non-zero B) comparing dX, dA, dB and the new
//     gradients separately against ref; an ErrBadInput case in
//     layers_errors_test.go per new argument; conformance vectors with the
//     new keys (docs/CONFORMANCE.md) for `lorabench check`.
package lora
