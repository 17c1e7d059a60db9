// Package safetensors reads and writes the safetensors tensor container
// (https://github.com/huggingface/safetensors) in pure Go.
//
// # Layout
//
//	[8 bytes]  N, little-endian uint64: length of the JSON header
//	[N bytes]  JSON: {"__metadata__": {string: string}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}
//	[rest]     the byte buffer; data_offsets are relative to its start
//
// # Validation
//
// Parse is as strict as the reference Rust implementation, because files come
// from outside and a malformed one must fail with an error, never a panic or
// an unbounded allocation: the header is at most 100 MB and inside the file,
// valid UTF-8 JSON starting with '{', with no duplicate keys and nothing but
// whitespace after it; every dtype is known; no dimension is negative; the
// element count times the dtype size equals the data_offsets span without
// integer overflow; and the tensors, ordered by offset, tile the buffer
// exactly (no gaps, overlaps or trailing bytes).
//
// # Writing
//
// Write is deterministic: metadata keys sorted, tensors ordered by element
// size (largest first) and then by name — the order the reference writer uses,
// which keeps every tensor aligned to its element size — and the header padded
// with spaces to a multiple of 8 bytes.
//
// # Ownership
//
// Parse does not copy: Tensor.Data slices alias the input buffer. ReadFile and
// Read own the buffers they return. Float32 and the other converters always
// return fresh slices.
package safetensors
