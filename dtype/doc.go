// Package dtype names the element types the engine stores (F32, F16, BF16,
// U8) and converts between them and float32 with IEEE round-to-nearest-even.
//
// It is pure Go with no cgo so that CPU-only packages (the float64 reference,
// the safetensors reader, the NF4 quantizer) can use it without Vulkan.
//
// bf16 is the upper 16 bits of an IEEE float32. Rounding to bf16 is written
// here (round to nearest, ties to even, NaN kept quiet) because no well-kept
// Go library does it; fp16 uses github.com/x448/float16.
package dtype
