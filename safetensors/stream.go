package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Entry is one tensor of a file that a Writer writes: its name, dtype name
// ("BF16", "U8") and shape. Its bytes come later.
type Entry struct {
	Name  string
	DType string
	Shape []int
}

// Writer writes a safetensors file one tensor at a time, so that a file
// larger than memory can be written: Create writes the header of every
// tensor up front, Write then fills in the bytes of any tensor, in pieces
// and in any order of tensors, and Close checks that every tensor is
// complete before the file takes its name. Until then the bytes go to a
// temporary file beside it, so an interrupted write never leaves a
// truncated file under the final name. The layout is Write's: metadata
// first, tensors ordered by element size (largest first) and then by name,
// the header padded to a multiple of 8 bytes; the same tensors give the
// same bytes as Marshal.
type Writer struct {
	path  string
	f     *os.File
	base  int64
	spans map[string]*writeSpan
	err   error // the first failure; Write and Close return it
	done  bool
}

type writeSpan struct {
	start, end, filled int64
}

// Create starts the file at path (which is replaced only by Close) with
// the given metadata and tensors; tensor names must be unique. The caller
// writes every tensor's bytes and then calls Close, or Abort to give up.
func Create(path string, metadata map[string]string, entries []Entry) (*Writer, error) {
	byName := make(map[string]Entry, len(entries))
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if _, dup := byName[e.Name]; dup {
			return nil, fmt.Errorf("safetensors: Create %s: tensor %q is listed twice", path, e.Name)
		}
		byName[e.Name] = e
		names = append(names, e.Name)
	}
	slices.Sort(names)
	bySize(names, func(n string) string { return byName[n].DType })
	es := make([]Entry, len(names))
	for i, n := range names {
		es[i] = byName[n]
	}
	header, spans, err := encodeHeader(metadata, es)
	if err != nil {
		return nil, fmt.Errorf("safetensors: Create %s: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("safetensors: Create: %w", err)
	}
	w := &Writer{path: path, f: f, base: 8 + int64(len(header)), spans: make(map[string]*writeSpan, len(es))}
	for i, e := range es {
		w.spans[e.Name] = &writeSpan{start: int64(spans[i][0]), end: int64(spans[i][1])}
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
	err = f.Chmod(0o644) // CreateTemp's 0600; the final file is WriteFile's 0644
	if err == nil {
		_, err = f.Write(append(n[:], header...))
	}
	if err != nil {
		w.Abort()
		return nil, fmt.Errorf("safetensors: Create %s: %w", path, err)
	}
	return w, nil
}

// Write appends data to tensor name's bytes, after what earlier Writes of
// it wrote. Writing past the tensor's size is an error, and so is any
// Write after a failure (the first error is kept).
func (w *Writer) Write(name string, data []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return fmt.Errorf("safetensors: %s: Write of %q after Close or Abort", w.path, name)
	}
	s, ok := w.spans[name]
	if !ok {
		return w.fail(fmt.Errorf("safetensors: %s: tensor %q is not in the header", w.path, name))
	}
	if s.filled+int64(len(data)) > s.end-s.start {
		return w.fail(fmt.Errorf("safetensors: %s: tensor %q: %d more bytes after %d overflow its %d", w.path, name, len(data), s.filled, s.end-s.start))
	}
	if _, err := w.f.WriteAt(data, w.base+s.start+s.filled); err != nil {
		return w.fail(fmt.Errorf("safetensors: %s: tensor %q: %w", w.path, name, err))
	}
	s.filled += int64(len(data))
	return nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

// Close checks that every tensor was written in full, syncs the file and
// renames it to its path. On any error the temporary file is removed and
// nothing is left at path. Close after Close or Abort returns the first
// result again.
func (w *Writer) Close() error {
	if w.done {
		return w.err
	}
	if w.err == nil {
		var short []string
		for n, s := range w.spans {
			if s.filled != s.end-s.start {
				short = append(short, fmt.Sprintf("%q (%d of %d bytes)", n, s.filled, s.end-s.start))
			}
		}
		if len(short) > 0 {
			slices.Sort(short)
			w.err = fmt.Errorf("safetensors: %s: tensors not written in full: %s", w.path, strings.Join(short, ", "))
		}
	}
	if w.err == nil {
		w.err = errors.Join(w.f.Sync(), w.f.Close())
		if w.err == nil {
			w.err = os.Rename(w.f.Name(), w.path)
		}
	}
	if w.err != nil {
		w.Abort()
	}
	w.done = true
	return w.err
}

// Abort closes and removes the temporary file; path is left untouched. It
// is safe after Close and twice.
func (w *Writer) Abort() {
	if w == nil || w.done {
		return
	}
	w.done = true
	w.f.Close()
	os.Remove(w.f.Name())
	if w.err == nil {
		w.err = fmt.Errorf("safetensors: %s: write aborted", w.path)
	}
}
