package hf

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// Size limits for the JSON files, far above any real one (a config.json is a
// few KiB, the index of a 405B model about 2 MiB), so that a wrong path (a
// multi-GiB file) fails fast instead of being read into memory.
const (
	maxConfigBytes = 4 << 20
	maxIndexBytes  = 64 << 20
)

// readSmallFile reads a regular file of at most limit bytes. Like
// safetensors.Open it opens without blocking and refuses FIFOs and devices.
func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (mode %s): %w", path, st.Mode().Type(), ErrBadCheckpoint)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s has %d bytes, more than the %d this file may have: %w", path, st.Size(), limit, ErrBadCheckpoint)
	}
	// The file may grow after Stat: read one byte past the limit to see it.
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s has more than %d bytes: %w", path, limit, ErrBadCheckpoint)
	}
	return b, nil
}

// isFile reports whether path names something (following links) that is
// not a directory; a FIFO or device counts, so that opening it reports it.
func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}
