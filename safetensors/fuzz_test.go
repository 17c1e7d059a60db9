package safetensors

import (
	"os"
	"testing"
)

// FuzzParse checks that no input panics, and that whatever parses survives a
// Write/Parse round trip unchanged.
func FuzzParse(f *testing.F) {
	for _, p := range testdataFiles(f)[:3] {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
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
