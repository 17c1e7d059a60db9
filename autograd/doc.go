// Package autograd chains the LoRA layers of package lora on a tape, so a
// model built from several layers gets every adapter gradient and dX from
// one backward call, as PyTorch's autograd gives them to axolotl's kernels.
//
// # Model
//
// A Var is a tensor on the tape. Leaves wrap the caller's tensors (inputs
// with NewVar, adapter parameters through the layer adapters); outputs of
// Tape.Apply wrap tensors the tape allocated. Frozen tensors — base weights
// and biases, NF4 states — are never Vars, so no gradient is ever computed
// for them.
//
// A Function is a differentiable op: Forward records the op and returns a
// Context holding what its backward needs (for the lora layers, their Saved
// contexts); Params lists the trainable Vars it reads besides its inputs.
// NewO, NewQKV and NewMLP wrap lora.O, lora.QKV and lora.MLP; each makes the
// Vars of its projections' lora_A and lora_B once (ProjVars), so applying
// one layer twice sums both applications' parameter gradients.
//
//	tape := autograd.NewTape(eng)
//	defer tape.Release()                      // after the submit
//	x := autograd.NewVar(xTensor, true)
//	qkv, o := autograd.NewQKV(attnIn), autograd.NewO(attnOut)
//	outs, _ := tape.Apply(rec, qkv, x)        // Q, K, V
//	z, _ := tape.Apply(rec, o, outs[0])
//	_ = tape.Backward(rec, autograd.Seed{Var: z[0], Grad: gz})
//	_ = rec.Submit()
//	dAq := tape.Grad(qkv.Q.A)                 // and tape.Grad(x) = dX
//
// Backward takes one or more seeds (dL/dVar for a loss that is a sum of
// terms), walks the applications in reverse (recording order is a
// topological order), gives each the gradients of its outputs — zeros for
// an output nothing used — and sums the gradients of Vars used more than
// once, or seeded and used. An application is skipped when none of its
// outputs received a gradient or when nothing upstream requires one.
//
// # Recording
//
// Everything is recorded on the caller's vk.Recorder; results are valid
// after rec.Submit. Apply and Backward insert the barriers the data flow
// between applications needs.
//
// # Ownership
//
// The tape owns the outputs of Apply, all gradients (including those of
// leaves: Grad returns the tape's tensor) and the saved contexts; Release
// frees them all, once the work is submitted, and is safe to call twice.
// Seeds stay the caller's: the tape copies them before it accumulates. A
// tape serves one forward and one backward; make one per training step.
//
// # Accumulation
//
// Gradient sums are recorded with lora's elementwise add (Engine.AddTo):
// fp32 sum, one rounding to the dtype, O(M·N). A Var used once costs
// nothing extra, since its first gradient is taken as is.
//
// # Errors
//
// Argument errors wrap ErrBadInput (lora.ErrBadInput); errors from the
// layers pass through unchanged. After an error the tape must still be
// released; its partial results are meaningless.
package autograd
