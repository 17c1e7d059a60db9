// Package conformance loads the LoRA conformance vectors described in
// docs/CONFORMANCE.md (made by conformance/gen/make_vectors.py, with
// PyTorch) into typed cases, runs them on the engine, and measures results
// against them.
//
// One .safetensors file is one Case: an op (matmul_lora, lora_o, lora_qkv,
// lora_mlp), its projections (base weight dense or NF4, LoRA A [r,in] and
// B [out,r], scale), the inputs (X [M,in] and upstream gradients grad.*), and
// the float32 expected outputs expect.* with their tolerances.
//
// Load checks the whole file against the format — metadata, dtypes, every
// shape against X, A and B, and the exact set of expect.* keys — so that
// engine tests can index the maps without checking. Keys in Inputs, Expect,
// Tol and TorchErr drop the "expect." prefix: "Y", "grad.X",
// "grad.q.lora_A"; Inputs holds "X" and "grad.Y" / "grad.Q" ...
//
// Array.Data holds the stored values widened exactly to float32, so values
// of a bf16 case are bf16 values. NF4 weights stay packed in Projection.NF4;
// Projection.Dense decodes them the way the expected values were made.
//
// A result passes iff ref.RelErr(got, expect) <= Tol[key] (float64
// Frobenius; a NaN, a length mismatch or a non-zero result against an
// all-zero expect is +Inf and fails).
package conformance
