// Package kernels plans and records the engine's GPU kernels: every matmul
// form the LoRA layers need, on whichever kernel suits the device and the
// product, and the elementwise steps (adds, row biases, gated activations).
// Package lora builds the layers on it; nothing here knows about LoRA
// beyond the shapes its products have.
//
// # Choosing a matmul kernel
//
// A product C = α·op(A)·op(B) [+ α₂·A2·B2] + β·C (Gemm) is validated, then
// offered to an ordered list of candidates (plan.go), each with one
// predicate that says whether it can take the product and how:
//
//	nf4-slabs  NF4 B at M ≥ 512 on a workgroup-scope device: dequantize
//	           column slabs (bounded scratch), then plan each slab's dense
//	           product afresh (nf4slab.go)
//	coopmat    the subgroup-scope kernel's widest tile, where that tile
//	           alone gives enough workgroups to fill the device (it beats
//	           cm2 there on the H200)
//	cm2        VK_NV_cooperative_matrix2 workgroup-scope tiles, including
//	           128×16 and 128×32 tiles for [M, r] outputs (cm2.go)
//	narrow     outputs with a side ≤ 32, the rank products X·Aᵀ, G·B, dA,
//	           dB: reads the big operand once per 8/16/32 columns (narrow.go)
//	coopmat    VK_KHR_cooperative_matrix subgroup-scope tiles (coopmat.go)
//	tiled      the scalar tiled kernel, which takes everything (tiles.go)
//
// The first that takes the product runs it. Each plan says its grid and
// its split of K: when the output's tiles would not fill the device and K
// is long, K is split into slices whose f32 partials a reduction adds
// (record.go). KernelFor names the candidate a product would take.
//
// A product may carry further K segments (Gemm.Segs) that add into the
// same C, such as QKV's input gradient Σ_p G_p·W_p. The workgroup-scope
// kernel walks them in one dispatch where they are dense, in one form
// and deep enough (segments.go); elsewhere they run as one product after
// another, each after a barrier.
// Options switch candidates off and override tiles, for comparisons; the
// package never reads the environment.
//
// # Shaders
//
// Every dispatch names its variant by a typed key of package shaders
// (shaders.MatmulKey, GatedKey, AddKey, SplitKReduceKey), never by a
// string; the registry supplies the binding count and push-constant size,
// and the push structs are shaders' Go mirrors. A key without a compiled
// module fails the shaders tests, not a run.
//
// # Errors
//
// Argument errors wrap ErrBadInput and are found before anything is
// recorded, so the recorder stays usable. Device errors come from vk.
package kernels
