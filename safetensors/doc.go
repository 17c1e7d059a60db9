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
// # Reading lazily
//
// Open (or NewReader, for any io.ReaderAt) reads and validates only the
// header, just as strictly, and additionally checks that every tensor's
// byte range lies inside the file, naming the tensor that does not (a
// truncated shard). Tensor bytes are then read on demand: ReadTensor reads
// one tensor, Section gives a reader over one tensor's bytes for reading it
// in pieces, and Load builds an in-memory File of a few named tensors.
// Open accepts only regular files: a FIFO or a device could block or never
// end.
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
// Parse does not copy: Tensor.Data slices alias the input buffer. ReadFile,
// Read and a Reader's ReadTensor and Load own the buffers they return.
// Float32 and the other converters always return fresh slices.
package safetensors
