package hf

import (
	"errors"
	"fmt"
	"os"

	"github.com/vklora/vklora/internal/fsutil"
)

// Size limits for the JSON files, far above any real one (a config.json is a
// few KiB, the index of a 405B model about 2 MiB), so that a wrong path (a
// multi-GiB file) fails fast instead of being read into memory.
const (
	maxConfigBytes = 4 << 20
	maxIndexBytes  = 64 << 20
)

// readSmallFile reads a regular file of at most limit bytes (fsutil.ReadSmall:
// no blocking on a FIFO, no device); a refusal is a bad checkpoint.
func readSmallFile(path string, limit int64) ([]byte, error) {
	b, err := fsutil.ReadSmall(path, limit)
	if errors.Is(err, fsutil.ErrNotRegular) || errors.Is(err, fsutil.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %w", err, ErrBadCheckpoint)
	}
	return b, err
}

// isFile reports whether path names something (following links) that is
// not a directory; a FIFO or device counts, so that opening it reports it.
func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}
