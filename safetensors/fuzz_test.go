package safetensors

import (
	"os"
	"testing"
)

// FuzzParse checks that no input panics, and that whatever parses survives a
// Write/Parse round trip unchanged.
func FuzzParse(f *testing.F) {
	// Small seeds only: the fuzzer minimizes every new input, and on the
	// 30-80 KB conformance files that alone took minutes per input.
	b, err := os.ReadFile("../testdata/small/lora_o-bf16-nf4-9x33x21-r1-1.safetensors")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	small := New()
	small.Metadata["op"] = "matmul_lora"
	_ = small.Put("a", "F32", []int{1, 2}, make([]byte, 8))
	_ = small.Put("b", "BF16", []int{3}, make([]byte, 6))
	_ = small.Put("c", "U8", []int{0}, nil)
	b, err = Marshal(small)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	for _, c := range badFiles {
		f.Add(c.file)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			return
		}
		out, err := Marshal(file)
		if err != nil {
			t.Fatalf("parsed file does not marshal: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("marshalled file does not parse: %v", err)
		}
		if len(again.Tensors) != len(file.Tensors) || len(again.Metadata) != len(file.Metadata) {
			t.Fatalf("round trip changed the counts")
		}
		for name, x := range file.Tensors {
			y := again.Tensors[name]
			if x.DType != y.DType || string(x.Data) != string(y.Data) || len(x.Shape) != len(y.Shape) {
				t.Fatalf("round trip changed tensor %q", name)
			}
		}
		for k, v := range file.Metadata {
			if again.Metadata[k] != v {
				t.Fatalf("round trip changed metadata %q", k)
			}
		}
	})
}
