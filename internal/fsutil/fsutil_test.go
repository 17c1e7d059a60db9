package fsutil

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadSmall(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.json")
	require.NoError(t, os.WriteFile(p, []byte("0123456789"), 0o644))
	b, err := ReadSmall(p, 10)
	require.NoError(t, err)
	require.Equal(t, "0123456789", string(b))
	_, err = ReadSmall(p, 9)
	require.ErrorIs(t, err, ErrTooLarge)
	require.ErrorContains(t, err, p)

	_, err = ReadSmall(dir, 1<<20)
	require.ErrorIs(t, err, ErrNotRegular, "a directory")
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))
	_, err = ReadSmall(fifo, 1<<20) // must not block: no writer
	require.ErrorIs(t, err, ErrNotRegular)
	_, _, err = OpenRegular(filepath.Join(dir, "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// WriteFileAtomic replaces the file whole and leaves no temporary file
// behind, on success or on failure.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cache.bin")
	require.NoError(t, WriteFileAtomic(p, []byte("first")))
	require.NoError(t, WriteFileAtomic(p, []byte("second")))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "second", string(b))
	sub := filepath.Join(dir, "sub")
	require.NoError(t, os.Mkdir(sub, 0o755))
	require.Error(t, WriteFileAtomic(sub, []byte("x")), "a directory cannot be replaced by a file")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 2, "the file and sub: no temporary left")
	require.Error(t, WriteFileAtomic(filepath.Join(dir, "missing", "f"), nil), "the directory must exist")
}
