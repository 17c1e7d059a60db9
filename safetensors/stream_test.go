package safetensors

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// entriesOf lists f's tensors as Create takes them, in a shuffled order
// (Create orders them itself).
func entriesOf(f *File, rng *rand.Rand) []Entry {
	var es []Entry
	for _, n := range f.Names() {
		t := f.Tensors[n]
		es = append(es, Entry{Name: n, DType: t.DType, Shape: t.Shape})
	}
	rng.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
	return es
}

// A Writer fed each conformance file's tensors in pieces, in shuffled
// order, writes exactly Marshal's bytes, and only Close makes the file.
func TestWriterMatchesMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, p := range testdataFiles(t) {
		f, err := ReadFile(p)
		require.NoError(t, err)
		require.NoError(t, f.Put("x.empty", "F32", []int{0, 3}, nil)) // an empty tensor too
		want, err := Marshal(f)
		require.NoError(t, err)
		path := filepath.Join(t.TempDir(), "out.safetensors")
		w, err := Create(path, f.Metadata, entriesOf(f, rng))
		require.NoError(t, err)
		names := f.Names()
		rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		for _, n := range names {
			data := f.Tensors[n].Data
			for len(data) > 0 {
				k := min(len(data), 1+rng.IntN(7))
				require.NoError(t, w.Write(n, data[:k]))
				data = data[k:]
			}
		}
		_, err = os.Stat(path)
		require.ErrorIs(t, err, os.ErrNotExist, "%s: the file appears only at Close", p)
		require.NoError(t, w.Close())
		got, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, want, got, p)
		require.NoError(t, w.Close(), "a second Close returns the first result")
		w.Abort() // harmless after Close
		_, err = os.Stat(path)
		require.NoError(t, err)
		leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*"))
		require.Empty(t, leftovers, "no temporary file left")
	}
}

// Misuse fails with the tensor named, and a failed or aborted write leaves
// neither the file nor its temporary behind; an existing file survives.
func TestWriterErrors(t *testing.T) {
	es := []Entry{{Name: "a", DType: "F32", Shape: []int{2}}, {Name: "b", DType: "BF16", Shape: []int{3}}}
	dir := t.TempDir()
	path := filepath.Join(dir, "x.safetensors")
	require.NoError(t, os.WriteFile(path, []byte("old"), 0o644))
	for _, c := range []struct {
		name string
		run  func(w *Writer) error
		want string
	}{
		{"short tensor", func(w *Writer) error {
			require.NoError(t, w.Write("a", make([]byte, 8)))
			require.NoError(t, w.Write("b", make([]byte, 4)))
			return w.Close()
		}, `"b" (4 of 6 bytes)`},
		{"overflow", func(w *Writer) error { return w.Write("a", make([]byte, 9)) }, `tensor "a": 9 more bytes after 0 overflow its 8`},
		{"unknown tensor", func(w *Writer) error { return w.Write("c", nil) }, `"c" is not in the header`},
		{"aborted", func(w *Writer) error { w.Abort(); return w.Close() }, "aborted"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, err := Create(path, nil, es)
			require.NoError(t, err)
			require.ErrorContains(t, c.run(w), c.want)
			require.ErrorContains(t, w.Close(), c.want, "Close keeps the first error")
			old, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, "old", string(old))
			leftovers, _ := filepath.Glob(filepath.Join(dir, ".*"))
			require.Empty(t, leftovers)
		})
	}
	_, err := Create(path, nil, append(es, es[0]))
	require.ErrorContains(t, err, `tensor "a" is listed twice`)
	_, err = Create(path, nil, []Entry{{Name: "z", DType: "Q4", Shape: []int{1}}})
	require.ErrorContains(t, err, `unknown dtype "Q4"`)
	_, err = Create(path, nil, []Entry{{Name: "__metadata__", DType: "F32", Shape: []int{1}}})
	require.ErrorContains(t, err, "reserved for metadata")
}
