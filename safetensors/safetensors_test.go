package safetensors

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vklora/vklora/dtype"
)

// testdataFiles lists the conformance vectors shipped with the repository.
func testdataFiles(t testing.TB) []string {
	paths, err := filepath.Glob("../testdata/small/*.safetensors")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	return paths
}

// raw builds a file from a header string and a buffer, without padding.
func raw(header string, buf []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(buf))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	return append(append(b, header...), buf...)
}

func TestReadTestdataAndRewrite(t *testing.T) {
	for _, p := range testdataFiles(t) {
		orig, err := os.ReadFile(p)
		require.NoError(t, err)
		f, err := ReadFile(p)
		require.NoError(t, err, p)
		require.NotEmpty(t, f.Metadata["op"], p)

		out, err := Marshal(f)
		require.NoError(t, err)
		// The reference writer orders tensors as Write does, so the data
		// buffers agree byte for byte; only the metadata order (a Rust
		// HashMap there) may differ, which can change the header length.
		hOrig := binary.LittleEndian.Uint64(orig)
		hOut := binary.LittleEndian.Uint64(out)
		require.Equal(t, orig[8+hOrig:], out[8+hOut:], p)
		require.Zero(t, hOut%8, "header padded to 8 bytes")

		g, err := Parse(out)
		require.NoError(t, err)
		require.Equal(t, f.Metadata, g.Metadata)
		require.Equal(t, f.Tensors, g.Tensors)

		// Read through io.ReaderAt gives the same result as ReadFile.
		h, err := Read(bytes.NewReader(orig), int64(len(orig)))
		require.NoError(t, err)
		require.Equal(t, f.Tensors, h.Tensors)
	}
}

func TestTensorOrderMatchesReferenceHeader(t *testing.T) {
	// The tensor entries of our header must appear in the same order as the
	// reference's, which is what makes the data buffers identical.
	p := "../testdata/small/matmul_lora-bf16-nf4-17x40x24-r7-1.safetensors"
	f, err := ReadFile(p)
	require.NoError(t, err)
	order := f.writeOrder()
	require.Equal(t, []string{"expect.Y", "w.weight.absmax", "w.weight.quant_map", "X"}, order[:4])
}

func TestFloat32Conversions(t *testing.T) {
	f := New()
	xs := []float32{1, -2.5, 3.140625, 1e-3, 65504, -0.0}
	for _, d := range dtype.Floats {
		name := "t." + d.String()
		require.NoError(t, f.PutFloat32(name, d, []int{2, 3}, xs))
	}
	require.NoError(t, f.Put("u", "U8", []int{3}, []byte{1, 2, 255}))
	f.Metadata["k"] = "v"
	b, err := Marshal(f)
	require.NoError(t, err)
	g, err := Parse(b)
	require.NoError(t, err)
	for _, d := range dtype.Floats {
		got, shape, err := g.Float32("t." + d.String())
		require.NoError(t, err)
		require.Equal(t, []int{2, 3}, shape)
		for i := range xs {
			require.Equal(t, dtype.Round(d, xs[i]), got[i], "%v element %d", d, i)
		}
	}
	u, shape, err := g.Uint8("u")
	require.NoError(t, err)
	require.Equal(t, []byte{1, 2, 255}, u)
	require.Equal(t, []int{3}, shape)
	_, _, err = g.Float32("u")
	require.ErrorContains(t, err, `"u"`)
	_, _, err = g.Uint8("t.f32")
	require.ErrorContains(t, err, "want U8")
	_, _, err = g.Float32("missing")
	require.ErrorContains(t, err, `"missing"`)
	require.Equal(t, "v", g.Metadata["k"])
}

func TestEmptyAndScalar(t *testing.T) {
	f := New()
	require.NoError(t, f.Put("empty", "F32", []int{0, 5}, nil))
	require.NoError(t, f.Put("scalar", "F64", []int{}, make([]byte, 8)))
	b, err := Marshal(f)
	require.NoError(t, err)
	g, err := Parse(b)
	require.NoError(t, err)
	require.Equal(t, []int{0, 5}, g.Tensors["empty"].Shape)
	require.Equal(t, 1, g.Tensors["scalar"].NumElements())
	require.Empty(t, g.Metadata)

	// A file without tensors is valid too.
	b, err = Marshal(New())
	require.NoError(t, err)
	_, err = Parse(b)
	require.NoError(t, err)
}

func TestPutRejects(t *testing.T) {
	f := New()
	require.ErrorContains(t, f.Put("a", "F32", []int{2}, make([]byte, 4)), "needs 8 bytes, got 4")
	require.ErrorContains(t, f.Put("a", "Q4", []int{1}, make([]byte, 1)), `unknown dtype "Q4"`)
	require.ErrorContains(t, f.Put("a", "U8", []int{-1}, nil), "negative")
	require.ErrorContains(t, f.Put("a", "U8", []int{1 << 40, 1 << 40, 1 << 40}, nil), "overflows")
	require.ErrorContains(t, f.Put(metadataKey, "U8", []int{0}, nil), "reserved")
	require.ErrorContains(t, f.PutFloat32("a", dtype.F32, []int{3}, []float32{1}), "3 elements, got 1")
	require.ErrorContains(t, f.PutFloat32("a", dtype.U8, []int{1}, []float32{1}), "cannot store")
}

// badFiles are malformed inputs with the error each must produce; they also
// seed FuzzParse.
var badFiles = []struct {
	name string
	file []byte
	err  string
}{
	{"short", []byte{1, 2, 3}, "shorter than"},
	{"huge header len", append([]byte{0, 0, 0, 0, 0, 0, 0, 0x7f}, "{}"...), "exceeds the 100000000-byte limit"},
	{"header past end", append([]byte{100, 0, 0, 0, 0, 0, 0, 0}, "{}"...), "exceeds the 2 bytes"},
	{"not an object", raw(`[]`, nil), "does not start with '{'"},
	{"empty header", raw(``, nil), "does not start with '{'"},
	{"bad json", raw(`{"a":`, nil), `tensor "a"`},
	{"trailing", raw(`{} x`, nil), "trailing data"},
	{"trailing object", raw(`{}{}`, nil), "trailing data"},
	{"bad utf8", raw("{\"\xff\":1}", nil), "UTF-8"},
	{"duplicate", raw(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, []byte{1, 2}), "duplicate key"},
	{"unknown dtype", raw(`{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}`, []byte{1}), `unknown dtype "Q4"`},
	{"missing field", raw(`{"a":{"dtype":"U8","shape":[1]}}`, []byte{1}), "needs dtype, shape and data_offsets"},
	{"negative dim", raw(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}`, nil), "invalid dimension -1"},
	{"float dim", raw(`{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}`, []byte{1}), `tensor "a"`},
	{"overflow", raw(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, nil), "overflows"},
	{"size mismatch", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, make([]byte, 4)), "needs 8 bytes but data_offsets [0 4] span 4"},
	{"three offsets", raw(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}`, []byte{1}), "has 3 values"},
	{"decreasing", raw(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[2,1]}}`, nil), "decreasing"},
	{"past buffer", raw(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, []byte{1}), "cover 4 bytes but the buffer after the header holds 1"},
	{"gap", raw(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, []byte{1, 2}), "gap before tensor"},
	{"overlap", raw(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`, []byte{1, 2, 3}), "overlaps"},
	{"trailing bytes", raw(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, []byte{1, 2}), "cover 1 bytes"},
	{"metadata not strings", raw(`{"__metadata__":{"a":1}}`, nil), "must map strings to strings"},
	{"metadata duplicate key", raw(`{"__metadata__":{"a":"1","a":"2"}}`, nil), `__metadata__ has duplicate key "a"`},
	{"huge offsets", raw(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[99999999999999999999,0]}}`, nil), `tensor "a"`},
}

func TestParseRejects(t *testing.T) {
	for _, c := range badFiles {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.file)
			require.Error(t, err)
			require.Contains(t, err.Error(), c.err)
			_, err = Read(bytes.NewReader(c.file), int64(len(c.file)))
			require.Error(t, err)
		})
	}
}

func TestMetadataNullAndOrder(t *testing.T) {
	// Offsets out of name order are fine as long as they tile the buffer.
	f, err := Parse(raw(`{"__metadata__":null,"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, []byte{7, 9}))
	require.NoError(t, err)
	require.Equal(t, []byte{7}, f.Tensors["a"].Data)
	require.Equal(t, []byte{9}, f.Tensors["b"].Data)
	require.Equal(t, []string{"a", "b"}, f.Names())
}

func TestWriteFile(t *testing.T) {
	f := New()
	f.Metadata["format"] = "pt"
	require.NoError(t, f.PutFloat32("x", dtype.BF16, []int{1, 2}, []float32{1, 2}))
	p := filepath.Join(t.TempDir(), "x.safetensors")
	require.NoError(t, WriteFile(p, f))
	g, err := ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, f.Tensors, g.Tensors)
	b, _ := os.ReadFile(p)
	require.True(t, strings.HasPrefix(string(b[8:]), `{"__metadata__":{"format":"pt"},"x":{"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]}}`))

	_, err = ReadFile(filepath.Join(t.TempDir(), "missing"))
	require.Error(t, err)
}

// Read trusts no size argument: a size beyond what the header promises
// (2^62 once panicked in makeslice) or short of it is an error, and
// nothing larger than the header is allocated before the check.
func TestReadSizeNotTrusted(t *testing.T) {
	file := raw(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}`, []byte{1, 2})
	for _, size := range []int64{1 << 62, int64(len(file)) + 1, int64(len(file)) - 1} {
		_, err := Read(bytes.NewReader(file), size)
		require.Error(t, err, "size %d", size)
	}
	f, err := Read(bytes.NewReader(file), int64(len(file)))
	require.NoError(t, err)
	require.Equal(t, []byte{1, 2}, f.Tensors["a"].Data)
}
