package safetensors

import (
	"bytes"
	"testing"
)

// FuzzReader checks that the lazy Reader never panics and agrees with
// Parse on every input: both accept or both refuse, and what is accepted
// reads back the same tensors and metadata.
func FuzzReader(f *testing.F) {
	small := New()
	small.Metadata["format"] = "pt"
	_ = small.Put("a", "F32", []int{1, 2}, make([]byte, 8))
	_ = small.Put("b", "BF16", []int{3}, make([]byte, 6))
	_ = small.Put("c", "U8", []int{0}, nil)
	b, err := Marshal(small)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)-1])
	for _, c := range badFiles {
		f.Add(c.file)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, perr := Parse(b)
		r, rerr := NewReader(bytes.NewReader(b), int64(len(b)), "fuzz")
		if (perr == nil) != (rerr == nil) {
			t.Fatalf("Parse error %v, NewReader error %v", perr, rerr)
		}
		if rerr != nil {
			return
		}
		if r.Len() != len(want.Tensors) || len(r.Metadata()) != len(want.Metadata) {
			t.Fatalf("Reader has %d tensors and %d metadata keys, Parse %d and %d", r.Len(), len(r.Metadata()), len(want.Tensors), len(want.Metadata))
		}
		for name, wt := range want.Tensors {
			got, err := r.ReadTensor(name)
			if err != nil {
				t.Fatalf("ReadTensor(%q): %v", name, err)
			}
			if got.DType != wt.DType || !bytes.Equal(got.Data, wt.Data) || len(got.Shape) != len(wt.Shape) {
				t.Fatalf("tensor %q differs from Parse's", name)
			}
		}
		for k, v := range want.Metadata {
			if r.Metadata()[k] != v {
				t.Fatalf("metadata %q differs", k)
			}
		}
	})
}
