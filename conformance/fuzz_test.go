package conformance

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vklora/vklora/safetensors"
)

// FuzzFromFile checks that no parsed safetensors file, however its metadata
// and tensors disagree with a conformance case, makes the case loader
// panic: it returns a case or an error. Seeds are the committed small
// vectors, one per op.
func FuzzFromFile(f *testing.F) {
	paths, err := filepath.Glob("../testdata/small/*.safetensors")
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seed vectors in testdata/small (%v)", err)
	}
	seen := map[string]bool{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		file, err := safetensors.Parse(b)
		if err != nil {
			f.Fatal(err)
		}
		if op := file.Metadata["op"]; !seen[op] && len(b) < 64<<10 {
			seen[op] = true
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := safetensors.Parse(b)
		if err != nil {
			return
		}
		c, err := FromFile(file)
		if err == nil && c == nil {
			t.Fatal("FromFile returned neither a case nor an error")
		}
	})
}
