// Package optim is torch.optim.AdamW on the device: the optimizer step of a
// LoRA fine-tune recorded on a vk.Recorder, with global-norm gradient
// clipping (torch.nn.utils.clip_grad_norm_), a learning-rate schedule
// (LambdaLR; transformers' cosine with warmup), f32 gradient accumulation
// over micro-batches, and a savable state. A step reads nothing back to the
// host.
//
//	opt, err := optim.NewAdamW(dev, []optim.Param{{Name: "q.lora_A", Tensor: a}, {Name: "q.lora_B", Tensor: b}},
//		optim.AdamWConfig{LR: 2e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0,
//			MaxGradNorm: 1, Schedule: optim.LinearWarmupCosine(100, 1000, 0)})
//	defer opt.Release()
//	// per training step, after the backward pass that produced dA and dB:
//	err = opt.Step(rec, []*vk.Tensor{dA, dB}) // recorded: clip, then update a and b
//	err = rec.Submit()                        // a and b hold the new values
//	norm, err := opt.GradNorm()               // the step's gradient norm, for logging
//
// With gradient accumulation, sum the micro-batches' gradients in f32 and
// step once:
//
//	acc, err := optim.NewGradAccumulator(dev, opt.Params())
//	for _, mb := range microBatches { /* backward */ err = acc.Add(rec, grads, 1.0/float32(len(microBatches))) }
//	err = opt.Step(rec, acc.Grads())
//	err = acc.ZeroGrad(rec)
//
// # Semantics
//
// A step is torch.optim.AdamW(foreach=False, capturable=False,
// maximize=False, amsgrad=False) after clip_grad_norm_, for step t = 1, 2, …
// at rate lr = LR·Schedule(t−1):
//
//	total = ‖(g₁, …, gₙ)‖₂ (all gradients, f32);  coef = min(max_norm/(total + 1e-6), 1);  g ← g·coef
//	p ← p·(1 − lr·wd)
//	m ← lerp(m, g, 1 − β1)                  (= β1·m + (1 − β1)·g)
//	v ← v·β2 + (1 − β2)·g·g
//	p ← p − (lr/(1 − β1^t))·m / (√v/√(1 − β2^t) + eps)
//
// The order of operations is that of torch's _single_tensor_adam on the
// CPU, so that f32 results agree with torch's to f32 rounding:
//
//   - The scalars lr, 1 − lr·wd, 1 − β1, 1 − β2, β2, −lr/(1 − β1^t),
//     √(1 − β2^t) and eps are computed on the host in float64 as Python
//     computes them (β^t correctly rounded, as Python's ** is) and each is
//     rounded once to f32, as torch rounds a Python scalar for an f32 op.
//   - Per element, in f32: g·coef (clipping only); p·decay; the lerp as
//     ATen's lerp_vec, fma(w, g − m, m) for w = 1 − β1 < 0.5 (else
//     fma(w − 1, g − m, g)), a fused multiply-add emulated from adds and
//     multiplies so that it is rounded once on every driver (GLSL's fma()
//     may be unfused; lavapipe's is); v·β2, then v + ((1 − β2)·g)·g
//     (addcmul_); sqrt(v) / √(1 − β2^t) + eps; then
//     p + (−step_size·m) / denom (addcdiv_). Every other operation is one
//     rounded f32 operation, never contracted.
//   - clip: the sum of squares of every gradient element, in f32 on the
//     device (sumsq.comp: fixed partial sums, so a run is reproducible bit
//     for bit), total = sqrt(Σ), coef = f32(1/(total + 1e-6))·max_norm
//     (torch's Tensor.__rtruediv__), clamped to ≤ 1. As in torch with
//     error_if_nonfinite=False, a non-finite norm makes the update NaN.
//     The gradients themselves are not modified.
//
// Lavapipe's division and square root are correctly rounded, so there the
// update is bit for bit a float32 CPU evaluation of these steps (the tests'
// reference). Vulkan lets other drivers' OpFDiv and sqrt be a few ulp off:
// results then differ from torch's by a few f32 ulp per step. The norm's sum is in a different order from torch's, so the
// clip coefficient agrees to f32 rounding, not bitwise.
//
// Deviations from torch, by design: f16 and bf16 parameters keep an f32
// master copy, and f32 moments: the update runs on the master, and the
// parameter receives the master rounded to nearest even (torch's AdamW on a
// bf16 parameter computes in bf16 instead; this is torch's AdamW on an f32
// copy followed by .to(bfloat16)). Their gradients may be of the
// parameter's dtype or f32; the norm and the clipped gradient stay f32
// (torch would round the clipped gradient to the gradient's dtype).
// Schedule is evaluated at record time, once per step.
//
// # Gradient accumulation
//
// GradAccumulator keeps an f32 sum per parameter: Add records acc += s·g,
// Grads are the accumulators to step with, ZeroGrad clears them. For f32
// gradients and s = 1 this is torch's .grad accumulation. To accumulate in
// the parameter's dtype instead, add the micro-batch gradient into a
// gradient tensor with lora.Engine.AddTo (what package autograd does for a
// Var used twice) and pass that to Step.
//
// # State
//
// State and SetState copy the moments, master copies and the step count
// to and from the host; SaveState and LoadState keep them in a safetensors
// file (<name>.exp_avg, <name>.exp_avg_sq, <name>.master; metadata format,
// step, dtype.<name>), checked on load against the parameters' names,
// shapes and dtypes. f32 parameters are not part of the state (save them
// with the model); a loaded master copy also resets its 16-bit parameter.
// A resumed run continues bit for bit as an uninterrupted one.
//
// # Errors
//
// Argument errors (a bad config, nil or released tensors, a gradient whose
// shape or dtype does not fit its parameter, tensors that share memory, a
// state that does not fit) wrap ErrBadInput (kernels.ErrBadInput) and name
// the argument and its shape; they are found before anything is recorded.
// A released optimizer returns errors wrapping vk.ErrReleased. No panic
// escapes the package.
package optim
