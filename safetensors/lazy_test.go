package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// countingReaderAt records every ReadAt, to show what a Reader reads.
type countingReaderAt struct {
	r     *bytes.Reader
	mu    sync.Mutex
	reads [][2]int64 // offset, length
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.mu.Lock()
	c.reads = append(c.reads, [2]int64{off, int64(len(p))})
	c.mu.Unlock()
	return c.r.ReadAt(p, off)
}

func (c *countingReaderAt) total() int64 {
	var n int64
	for _, r := range c.reads {
		n += r[1]
	}
	return n
}

func TestReaderMatchesReadFile(t *testing.T) {
	for _, p := range testdataFiles(t) {
		want, err := ReadFile(p)
		require.NoError(t, err)
		r, err := Open(p)
		require.NoError(t, err, p)
		require.Equal(t, p, r.Name())
		require.Equal(t, want.Metadata, r.Metadata())
		require.Equal(t, want.Names(), r.Names())
		require.Equal(t, len(want.Tensors), r.Len())
		for name, wt := range want.Tensors {
			info, ok := r.Info(name)
			require.True(t, ok, name)
			require.Equal(t, wt.DType, info.DType)
			require.Equal(t, wt.Shape, info.Shape)
			require.Equal(t, int64(len(wt.Data)), info.Size)
			got, err := r.ReadTensor(name)
			require.NoError(t, err)
			require.Equal(t, wt, got, name)
		}
		names := want.Names()[:2]
		sub, err := r.Load(names...)
		require.NoError(t, err)
		require.Equal(t, names, sub.Names())
		require.Equal(t, want.Metadata, sub.Metadata)
		require.NoError(t, r.Close())
	}
}

// A Reader reads the length field and the header at NewReader, then per
// ReadTensor exactly that tensor's bytes: never the whole file.
func TestReaderReadsOnlyWhatIsAsked(t *testing.T) {
	f := New()
	require.NoError(t, f.Put("big", "F32", []int{256}, make([]byte, 1024)))
	require.NoError(t, f.Put("small", "U8", []int{3}, []byte{1, 2, 3}))
	b, err := Marshal(f)
	require.NoError(t, err)
	n := int64(binary.LittleEndian.Uint64(b))

	c := &countingReaderAt{r: bytes.NewReader(b)}
	r, err := NewReader(c, int64(len(b)), "mem")
	require.NoError(t, err)
	require.Equal(t, 8+n, c.total(), "header only")

	c.reads = nil
	got, err := r.ReadTensor("small")
	require.NoError(t, err)
	require.Equal(t, []byte{1, 2, 3}, got.Data)
	info, _ := r.Info("small")
	require.Equal(t, [][2]int64{{info.Offset, 3}}, c.reads)

	c.reads = nil
	sec, err := r.Section("big")
	require.NoError(t, err)
	part := make([]byte, 100)
	_, err = sec.ReadAt(part, 500)
	require.NoError(t, err)
	info, _ = r.Info("big")
	require.Equal(t, [][2]int64{{info.Offset + 500, 100}}, c.reads)

	_, err = r.ReadTensor("nope")
	require.ErrorContains(t, err, `mem: no tensor "nope"`)
	_, err = r.Section("nope")
	require.ErrorContains(t, err, `"nope"`)
	require.NoError(t, r.Close(), "Close does not close the ReaderAt")
}

func TestReaderRejectsBadFiles(t *testing.T) {
	for _, c := range badFiles {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(c.file), int64(len(c.file)), "bad.safetensors")
			require.ErrorContains(t, err, "bad.safetensors")
		})
	}
	_, err := NewReader(nil, 0, "nil")
	require.ErrorContains(t, err, "nil")
}

// twoTensors is a file whose last tensor ("b") ends at the end of the file.
func twoTensors(t *testing.T) []byte {
	f := New()
	require.NoError(t, f.Put("a", "F32", []int{4}, make([]byte, 16)))
	require.NoError(t, f.Put("b", "U8", []int{5}, []byte{1, 2, 3, 4, 5}))
	b, err := Marshal(f)
	require.NoError(t, err)
	return b
}

func TestOpenTruncatedNamesFileAndTensor(t *testing.T) {
	b := twoTensors(t)
	p := filepath.Join(t.TempDir(), "shard.safetensors")
	require.NoError(t, os.WriteFile(p, b[:len(b)-2], 0o644))
	_, err := Open(p)
	require.ErrorContains(t, err, p)
	require.ErrorContains(t, err, `tensor "b"`)
	require.ErrorContains(t, err, "truncated")

	// A tensor whose offsets point past the end (the header lies).
	bad := raw(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[8],"data_offsets":[1000,1008]}}`, []byte{1, 2})
	_, err = NewReader(bytes.NewReader(bad), int64(len(bad)), "liar")
	require.ErrorContains(t, err, `tensor "b" at data bytes [1000,1008) ends past the 2 data bytes`)
}

// A file that shrinks after Open fails the read of the tensor it cut,
// naming it, rather than returning short data.
func TestReadTensorAfterShrink(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.safetensors")
	require.NoError(t, os.WriteFile(p, twoTensors(t), 0o644))
	r, err := Open(p)
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, os.Truncate(p, r.Size()-1))
	_, err = r.ReadTensor("b")
	require.ErrorContains(t, err, `tensor "b": read 4 of 5 bytes`)
	_, err = r.ReadTensor("a")
	require.NoError(t, err)
}

func TestReaderCloseIdempotent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.safetensors")
	require.NoError(t, os.WriteFile(p, twoTensors(t), 0o644))
	r, err := Open(p)
	require.NoError(t, err)
	require.NoError(t, r.Close())
	require.NoError(t, r.Close())
	_, err = r.ReadTensor("a")
	require.True(t, errors.Is(err, os.ErrClosed), "%v", err)
	_, err = r.Load("a")
	require.Error(t, err)
}

func TestOpenRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(dir)
	require.ErrorContains(t, err, "not a regular file")
	if _, err := os.Stat(os.DevNull); err == nil {
		_, err = Open(os.DevNull)
		require.ErrorContains(t, err, "not a regular file")
	}
	_, err = Open(filepath.Join(dir, "missing.safetensors"))
	require.True(t, errors.Is(err, os.ErrNotExist), "%v", err)
}
