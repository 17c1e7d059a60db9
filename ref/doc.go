// Package ref holds plain float64 CPU reference implementations of every LoRA
// op of the engine, one function per layer per direction, in the manner of
// llm.c's naive C beside its CUDA. It is the oracle for all GPU tests and for
// the benchmark CLI; clarity wins over speed, except that Matmul runs its rows
// on all CPUs so that shapes of about 1000×1000×1000 stay usable.
//
// # Math
//
// The formulas are those of docs/LORA-MATH.md (PEFT conventions). A
// projection P (see Proj) has a frozen base weight W [out, in], a LoRA pair
// A [r, in], B [out, r] and a scale s (alpha/r, or alpha/√r with rsLoRA):
//
//	lin_P(X) = X·Wᵀ + s·(X·Aᵀ)·Bᵀ + b                  X [M, in], Y [M, out]
//
// With G = dL/dY [M, out] the backward pass contracts through the rank and
// never forms B·A or Xᵀ·G:
//
//	GB = G·B [M, r];  dA = s·GBᵀ·X;  dB = s·Gᵀ·(X·Aᵀ);  dX = G·W + s·GB·A
//
// LinearForward/LinearBackward implement one projection (ops matmul_lora and
// lora_o of the conformance vectors), QKVForward/QKVBackward three projections
// on one X with a single summed dX (lora_qkv; k and v may be narrower than q),
// MLPForward/MLPBackward the gated MLP down(act(gate(X)) ⊙ up(X)) (lora_mlp)
// with the activations SwiGLU, GEGLU (erf) and GEGLUTanh.
//
// b is the optional frozen base bias [out] (Proj.Bias), added to every row;
// it has no gradient and leaves dX unchanged, so the backward formulas above
// do not mention it (MLPBackward recomputes e and g with their biases).
// Not covered: lora_B bias, dropout, DoRA, NF4 decoding (the caller passes
// the decoded W).
//
// # Layout and ownership
//
// Every matrix is a row-major []float64 with its dimensions passed explicitly
// and stated in each doc comment as [rows, cols]. Functions return freshly
// allocated results and never write into their inputs; the exception is
// MatmulAcc, which updates the C it is given (and says so). The reference
// computes in exact float64 arithmetic throughout: it does not round
// intermediate values to a storage dtype the way the GPU does (for example
// act(e) before the product with g); the tolerances of the conformance
// vectors cover that difference. Use RoundTo to produce inputs that a
// storage dtype can hold exactly.
//
// # Errors
//
// Shape mismatches (a slice length that disagrees with the dimensions) are
// programming errors and panic with a message naming the function and the
// operand. Only ParseActivation returns an error. The Activation type and
// the mapping from a model config's hidden_act are package activation's.
//
// # Comparing
//
// RelErr is the one relative Frobenius error ‖got−want‖/‖want‖ of the
// project: the conformance vectors, the GPU tests and lorabench all measure
// with it. It takes float32 or float64 on either side and has defined edge
// cases (length mismatch, NaN, infinities, an all-zero want) that can never
// pass a tolerance by accident. Mismatches and MismatchesRC list the worst
// elements for test failure messages.
package ref
