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
