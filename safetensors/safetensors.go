package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sort"
	"unicode/utf8"
)

// MaxHeaderSize bounds the JSON header, as the reference implementation does,
// so that a corrupt length cannot make a reader allocate gigabytes.
const MaxHeaderSize = 100_000_000

// metadataKey is the reserved header key holding the string-to-string map.
const metadataKey = "__metadata__"

// dtypeSizes maps every supported safetensors dtype name to its element size
// in bytes. Sub-byte types (F4, F6_*) are left out: their spans are not whole
// bytes per element and nothing in this engine produces them.
var dtypeSizes = map[string]int{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"I64": 8, "U64": 8, "F64": 8,
}

// DTypeSize returns the element size in bytes of a safetensors dtype name
// ("F32", "BF16", ...) and whether the name is supported.
func DTypeSize(name string) (int, bool) {
	n, ok := dtypeSizes[name]
	return n, ok
}

// File is a parsed safetensors file: its metadata and its tensors by name.
type File struct {
	Metadata map[string]string
	Tensors  map[string]Tensor
}

// Tensor is one entry: its dtype name as written in the file ("F32", "U8"),
// its shape and its raw little-endian bytes.
type Tensor struct {
	DType string
	Shape []int
	Data  []byte
}

// NumElements is the product of the shape (1 for a scalar).
func (t Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// New returns an empty File ready for Put.
func New() *File {
	return &File{Metadata: map[string]string{}, Tensors: map[string]Tensor{}}
}

// Names lists the tensor names in sorted order.
func (f *File) Names() []string {
	names := make([]string, 0, len(f.Tensors))
	for n := range f.Tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ReadFile reads and parses the file at path.
func ReadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Read parses a safetensors file of size bytes from r. It reads and parses
// the header first and allocates only what the header promises, so neither
// a corrupt header nor a wrong size (larger than the file really is) can
// make it allocate more than the file's tensors need.
func Read(r io.ReaderAt, size int64) (*File, error) {
	n, _, spans, err := readHeader(r, size)
	if err != nil {
		return nil, err
	}
	data := 0
	for _, s := range spans {
		data = max(data, s.end)
	}
	if want := 8 + n + int64(data); want != size {
		return nil, fmt.Errorf("safetensors: the header promises %d bytes in all, but the file has %d", want, size)
	}
	b := make([]byte, size)
	// ReadAt may return io.EOF together with a full read; only a short read is an error.
	if got, err := r.ReadAt(b[8:], 8); got != len(b)-8 {
		return nil, fmt.Errorf("safetensors: read %d of %d bytes: %w", got, size-8, err)
	}
	binary.LittleEndian.PutUint64(b, uint64(n))
	return Parse(b)
}

// headerLen checks the declared header length against the cap and the file size.
func headerLen(n uint64, size int64) (int64, error) {
	if n > MaxHeaderSize {
		return 0, fmt.Errorf("safetensors: header length %d exceeds the %d-byte limit", n, MaxHeaderSize)
	}
	if int64(n) > size-8 {
		return 0, fmt.Errorf("safetensors: header length %d exceeds the %d bytes after the length field", n, size-8)
	}
	return int64(n), nil
}

// Parse decodes a whole safetensors file held in b. Tensor data aliases b.
func Parse(b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("safetensors: file of %d bytes is shorter than the 8-byte header length", len(b))
	}
	n, err := headerLen(binary.LittleEndian.Uint64(b), int64(len(b)))
	if err != nil {
		return nil, err
	}
	header, buf := b[8:8+n], b[8+n:]
	if !utf8.Valid(header) {
		return nil, errors.New("safetensors: header is not valid UTF-8")
	}
	if len(header) == 0 || header[0] != '{' {
		return nil, errors.New("safetensors: header does not start with '{'")
	}
	f, spans, err := parseHeader(header)
	if err != nil {
		return nil, err
	}
	if err := checkSpans(spans, len(buf)); err != nil {
		return nil, err
	}
	for _, s := range spans {
		t := f.Tensors[s.name]
		t.Data = buf[s.begin:s.end:s.end]
		f.Tensors[s.name] = t
	}
	return f, nil
}

// span is one tensor's byte range in the buffer, kept to check the tiling.
type span struct {
	name       string
	begin, end int
}

// headerEntry mirrors one tensor's JSON; pointers tell "missing" from zero.
type headerEntry struct {
	DType       *string  `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

// parseHeader walks the top-level object token by token so that duplicate
// keys are caught (encoding/json into a map would silently keep the last).
func parseHeader(header []byte) (*File, []span, error) {
	dec := json.NewDecoder(bytes.NewReader(header))
	if _, err := dec.Token(); err != nil { // the '{' checked by the caller
		return nil, nil, fmt.Errorf("safetensors: header JSON: %w", err)
	}
	f := New()
	seen := map[string]bool{}
	var spans []span
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("safetensors: header JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, nil, fmt.Errorf("safetensors: header JSON: key %v is not a string", tok)
		}
		if seen[key] {
			return nil, nil, fmt.Errorf("safetensors: header has duplicate key %q", key)
		}
		seen[key] = true
		if key == metadataKey {
			if err := parseMetadata(dec, f.Metadata); err != nil {
				return nil, nil, err
			}
			continue
		}
		var e headerEntry
		if err := dec.Decode(&e); err != nil {
			return nil, nil, fmt.Errorf("safetensors: tensor %q: %w", key, err)
		}
		t, s, err := e.tensor(key)
		if err != nil {
			return nil, nil, err
		}
		f.Tensors[key] = t
		spans = append(spans, s)
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return nil, nil, fmt.Errorf("safetensors: header JSON: %w", err)
	}
	rest := header[dec.InputOffset():]
	if len(bytes.TrimLeft(rest, " \t\r\n")) != 0 {
		return nil, nil, fmt.Errorf("safetensors: %d bytes of trailing data after the header JSON", len(bytes.TrimLeft(rest, " \t\r\n")))
	}
	return f, spans, nil
}

// tensor validates one header entry: known dtype, non-negative dims, and an
// element count whose byte size matches the data_offsets span.
func (e headerEntry) tensor(name string) (Tensor, span, error) {
	if e.DType == nil || e.Shape == nil || e.DataOffsets == nil {
		return Tensor{}, span{}, fmt.Errorf("safetensors: tensor %q needs dtype, shape and data_offsets", name)
	}
	size, ok := dtypeSizes[*e.DType]
	if !ok {
		return Tensor{}, span{}, fmt.Errorf("safetensors: tensor %q has unknown dtype %q", name, *e.DType)
	}
	offs := *e.DataOffsets
	if len(offs) != 2 {
		return Tensor{}, span{}, fmt.Errorf("safetensors: tensor %q: data_offsets has %d values, want 2", name, len(offs))
	}
	if offs[0] < 0 || offs[1] < offs[0] {
		return Tensor{}, span{}, fmt.Errorf("safetensors: tensor %q: data_offsets %v are negative or decreasing", name, offs)
	}
	shape := make([]int, len(*e.Shape))
	nbytes := uint64(size)
	for i, d := range *e.Shape {
		if d < 0 || uint64(d) > math.MaxInt {
			return Tensor{}, span{}, fmt.Errorf("safetensors: tensor %q: shape %v has an invalid dimension %d", name, *e.Shape, d)
		}
		shape[i] = int(d)
		hi, lo := bits.Mul64(nbytes, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return Tensor{}, span{}, fmt.Errorf("safetensors: tensor %q: shape %v overflows the byte count", name, *e.Shape)
		}
		nbytes = lo
	}
	if want := uint64(offs[1] - offs[0]); nbytes != want {
		return Tensor{}, span{}, fmt.Errorf("safetensors: tensor %q: shape %v of %s needs %d bytes but data_offsets %v span %d",
			name, shape, *e.DType, nbytes, offs, want)
	}
	return Tensor{DType: *e.DType, Shape: shape}, span{name, int(offs[0]), int(offs[1])}, nil
}

// checkSpans requires the tensors, ordered by offset, to cover the buffer
// exactly: the reference implementation rejects gaps and overlaps, and
// accepting them would let two tensors share (and later clobber) bytes.
func checkSpans(spans []span, bufLen int) error {
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].begin != spans[j].begin {
			return spans[i].begin < spans[j].begin
		}
		return spans[i].end < spans[j].end
	})
	pos := 0
	for _, s := range spans {
		if s.begin != pos {
			if s.begin < pos {
				return fmt.Errorf("safetensors: tensor %q at bytes [%d,%d) overlaps the previous tensor ending at %d", s.name, s.begin, s.end, pos)
			}
			return fmt.Errorf("safetensors: gap before tensor %q: it starts at byte %d, previous data ends at %d", s.name, s.begin, pos)
		}
		pos = s.end
	}
	if pos != bufLen {
		return fmt.Errorf("safetensors: tensors cover %d bytes but the buffer after the header holds %d", pos, bufLen)
	}
	return nil
}

// parseMetadata reads the __metadata__ object token by token into md,
// refusing duplicate keys as the top level does (decoding into a map
// would keep the last silently) and values that are not strings.
func parseMetadata(dec *json.Decoder, md map[string]string) error {
	bad := func(err error) error {
		return fmt.Errorf("safetensors: %s must map strings to strings: %w", metadataKey, err)
	}
	if tok, err := dec.Token(); err != nil {
		return bad(err)
	} else if tok == nil {
		return nil // "__metadata__": null, as some writers emit
	} else if tok != json.Delim('{') {
		return bad(fmt.Errorf("got %v", tok))
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return bad(err)
		}
		key, _ := tok.(string) // object keys are always strings
		if _, dup := md[key]; dup {
			return fmt.Errorf("safetensors: %s has duplicate key %q", metadataKey, key)
		}
		tok, err = dec.Token()
		if err != nil {
			return bad(err)
		}
		v, ok := tok.(string)
		if !ok {
			return bad(fmt.Errorf("value of %q is %v", key, tok))
		}
		md[key] = v
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return bad(err)
	}
	return nil
}
