// Package fsutil opens the files the engine reads from users' folders
// (checkpoints, adapters, their JSON) safely: without blocking on a FIFO,
// refusing anything but a regular file, and with a size bound for small
// files, so that a wrong path fails with an error instead of hanging or
// filling memory. WriteFileAtomic replaces a cache file so that no reader
// sees half of it.
package fsutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrNotRegular and ErrTooLarge mark the refusals; the messages name the
// path.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("file too large")
)

// OpenRegular opens path for reading and returns it with its stat. The
// open does not block (O_NONBLOCK keeps a FIFO without writer from
// hanging it; it changes nothing for regular files), and anything but a
// regular file is refused.
func OpenRegular(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w (mode %s)", path, ErrNotRegular, st.Mode().Type())
	}
	return f, st, nil
}

// ReadSmall reads a regular file of at most limit bytes.
func ReadSmall(path string, limit int64) ([]byte, error) {
	f, st, err := OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st.Size() > limit {
		return nil, fmt.Errorf("%s: %w: %d bytes, more than the %d it may have", path, ErrTooLarge, st.Size(), limit)
	}
	// The file may grow after Stat: read one byte past the limit to see it.
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: more than the %d bytes it may have", path, ErrTooLarge, limit)
	}
	return b, nil
}

// WriteFileAtomic writes data to path (mode 0600) through a temporary file
// of its directory and a rename, so that a reader, another process
// included, sees the old file or the new one, never a partial one; on
// failure the temporary file is removed. The directory must exist.
func WriteFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
