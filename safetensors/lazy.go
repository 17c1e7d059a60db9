package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"sync"
	"unicode/utf8"

	"github.com/vklora/vklora/internal/fsutil"
)

// Reader is a safetensors file opened for reading one tensor at a time: Open
// reads and validates only the header, and tensor bytes are read on demand
// with ReadAt, so a multi-GiB checkpoint never has to sit in memory. The
// header is validated as strictly as Parse validates a whole file, and
// every tensor's byte range is checked to lie inside the file. A Reader is
// safe for concurrent reads.
type Reader struct {
	name     string
	ra       io.ReaderAt
	file     *os.File // the file Open opened, closed by Close; nil from NewReader
	size     int64
	metadata map[string]string
	infos    map[string]TensorInfo

	closeOnce sync.Once
	closeErr  error
	mu        sync.RWMutex // guards closed against reads racing Close
	closed    bool
}

// TensorInfo is one tensor's header entry: its dtype name, shape and where
// its bytes lie in the file.
type TensorInfo struct {
	DType string
	Shape []int
	// Offset is the position of the tensor's first byte from the start of
	// the file (not of the data buffer), and Size its length in bytes.
	Offset, Size int64
}

// NumElements is the product of the shape (1 for a scalar).
func (i TensorInfo) NumElements() int { return Tensor{Shape: i.Shape}.NumElements() }

// Open opens the safetensors file at path and reads its header. Only
// regular files are accepted: a FIFO or a device could block, or produce
// bytes without end, and has no size to check offsets against. The caller
// closes the Reader.
func Open(path string) (*Reader, error) {
	f, st, err := fsutil.OpenRegular(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	r, err := NewReader(f, st.Size(), path)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.file = f
	return r, nil
}

// NewReader reads the header of a safetensors file of size bytes from ra;
// name (a path, say) prefixes its errors. Close does not close ra.
func NewReader(ra io.ReaderAt, size int64, name string) (*Reader, error) {
	if ra == nil {
		return nil, fmt.Errorf("safetensors: %s: reader is nil", name)
	}
	n, f, spans, err := readHeader(ra, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	base := 8 + n
	dataLen := size - base
	// Each range is checked on its own before the tiling, so that a
	// truncated file is reported by the tensor that runs past its end.
	for _, s := range spans {
		if int64(s.end) > dataLen {
			return nil, fmt.Errorf("%s: safetensors: tensor %q at data bytes [%d,%d) ends past the %d data bytes in the file (truncated?)",
				name, s.name, s.begin, s.end, dataLen)
		}
	}
	if err := checkSpans(spans, int(dataLen)); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	infos := make(map[string]TensorInfo, len(spans))
	for _, s := range spans {
		t := f.Tensors[s.name]
		infos[s.name] = TensorInfo{DType: t.DType, Shape: t.Shape, Offset: base + int64(s.begin), Size: int64(s.end - s.begin)}
	}
	return &Reader{name: name, ra: ra, size: size, metadata: f.Metadata, infos: infos}, nil
}

// readHeader reads the length field and the JSON header through ra and
// parses it; it allocates at most the header, bounded by MaxHeaderSize and
// by size. It returns the header length and the tensors' spans in the data
// buffer, unchecked against the buffer's length.
func readHeader(ra io.ReaderAt, size int64) (int64, *File, []span, error) {
	if size < 8 {
		return 0, nil, nil, fmt.Errorf("safetensors: file of %d bytes is shorter than the 8-byte header length", size)
	}
	if size > math.MaxInt {
		return 0, nil, nil, fmt.Errorf("safetensors: file of %d bytes is too large for this platform", size)
	}
	var lenBuf [8]byte
	// ReadAt may return io.EOF together with a full read; only a short read is an error.
	if got, err := ra.ReadAt(lenBuf[:], 0); got != len(lenBuf) {
		return 0, nil, nil, fmt.Errorf("safetensors: reading header length: %w", errOrEOF(err))
	}
	n, err := headerLen(binary.LittleEndian.Uint64(lenBuf[:]), size)
	if err != nil {
		return 0, nil, nil, err
	}
	header := make([]byte, n)
	if got, err := ra.ReadAt(header, 8); got != len(header) {
		return 0, nil, nil, fmt.Errorf("safetensors: read %d of the %d header bytes: %w", got, n, errOrEOF(err))
	}
	if len(header) == 0 || header[0] != '{' || !utf8.Valid(header) {
		return 0, nil, nil, errors.New("safetensors: header is not a UTF-8 JSON object")
	}
	f, spans, err := parseHeader(header)
	if err != nil {
		return 0, nil, nil, err
	}
	return n, f, spans, nil
}

// errOrEOF names a short read that the ReaderAt did not explain.
func errOrEOF(err error) error {
	if err == nil {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Name is the name the Reader was opened with (the path for Open).
func (r *Reader) Name() string { return r.name }

// Size is the file's size in bytes.
func (r *Reader) Size() int64 { return r.size }

// Metadata returns a copy of the header's __metadata__ map.
func (r *Reader) Metadata() map[string]string {
	md := make(map[string]string, len(r.metadata))
	for k, v := range r.metadata {
		md[k] = v
	}
	return md
}

// Len is the number of tensors.
func (r *Reader) Len() int { return len(r.infos) }

// Names lists the tensor names in sorted order.
func (r *Reader) Names() []string {
	names := make([]string, 0, len(r.infos))
	for n := range r.infos {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Info returns the named tensor's header entry and whether it exists.
func (r *Reader) Info(name string) (TensorInfo, bool) {
	i, ok := r.infos[name]
	if ok {
		i.Shape = append([]int(nil), i.Shape...)
	}
	return i, ok
}

// Section returns a reader over the named tensor's bytes, for reading a
// large tensor in pieces. It reads through the Reader, so it fails once
// the Reader is closed.
func (r *Reader) Section(name string) (*io.SectionReader, error) {
	i, ok := r.infos[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: %s: no tensor %q", r.name, name)
	}
	return io.NewSectionReader(readerAt{r}, i.Offset, i.Size), nil
}

// readerAt reads through r, refusing reads after Close.
type readerAt struct{ r *Reader }

func (a readerAt) ReadAt(p []byte, off int64) (int, error) {
	a.r.mu.RLock()
	defer a.r.mu.RUnlock()
	if a.r.closed {
		return 0, fmt.Errorf("safetensors: %s: %w", a.r.name, os.ErrClosed)
	}
	return a.r.ra.ReadAt(p, off)
}

// ReadTensor reads the named tensor into a fresh buffer. A file that shrank
// since Open gives an error naming the tensor, never a short tensor.
func (r *Reader) ReadTensor(name string) (Tensor, error) {
	i, ok := r.infos[name]
	if !ok {
		return Tensor{}, fmt.Errorf("safetensors: %s: no tensor %q", r.name, name)
	}
	data := make([]byte, i.Size)
	if got, err := (readerAt{r}).ReadAt(data, i.Offset); got != len(data) {
		return Tensor{}, fmt.Errorf("safetensors: %s: tensor %q: read %d of %d bytes at offset %d: %w", r.name, name, got, i.Size, i.Offset, errOrEOF(err))
	}
	return Tensor{DType: i.DType, Shape: append([]int(nil), i.Shape...), Data: data}, nil
}

// Load reads the named tensors into an in-memory File carrying the
// Reader's metadata: the subset a function taking a *File needs (an NF4
// weight's tensors for quant.LoadNF4, say), without the rest of the file.
func (r *Reader) Load(names ...string) (*File, error) {
	f := New()
	f.Metadata = r.Metadata()
	for _, n := range names {
		t, err := r.ReadTensor(n)
		if err != nil {
			return nil, err
		}
		f.Tensors[n] = t
	}
	return f, nil
}

// Close closes the file Open opened; later reads fail. It is safe to call
// more than once and returns the first call's result.
func (r *Reader) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		if r.file != nil {
			r.closeErr = r.file.Close()
		}
	})
	return r.closeErr
}
