package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sort"
	"strconv"
)

// Put adds or replaces a tensor after checking that data holds exactly
// shape's elements of dtype. The slices are stored, not copied.
func (f *File) Put(name, dtype string, shape []int, data []byte) error {
	t := Tensor{DType: dtype, Shape: shape, Data: data}
	if err := t.check(name); err != nil {
		return err
	}
	if f.Tensors == nil {
		f.Tensors = map[string]Tensor{}
	}
	f.Tensors[name] = t
	return nil
}

// check validates an in-memory tensor before it is written.
func (t Tensor) check(name string) error {
	n, err := byteSize(name, t.DType, t.Shape)
	if err != nil {
		return err
	}
	if n != len(t.Data) {
		return fmt.Errorf("safetensors: tensor %q: shape %v of %s needs %d bytes, got %d", name, t.Shape, t.DType, n, len(t.Data))
	}
	return nil
}

// byteSize is the byte count of a tensor of dtype and shape, checked: a
// known dtype, no negative dimension, no overflow, and not the metadata key.
func byteSize(name, dtype string, shape []int) (int, error) {
	if name == metadataKey {
		return 0, fmt.Errorf("safetensors: %q is reserved for metadata and cannot name a tensor", name)
	}
	size, ok := dtypeSizes[dtype]
	if !ok {
		return 0, fmt.Errorf("safetensors: tensor %q has unknown dtype %q", name, dtype)
	}
	n := uint64(size)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("safetensors: tensor %q: shape %v has a negative dimension", name, shape)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt {
			return 0, fmt.Errorf("safetensors: tensor %q: shape %v overflows the byte count", name, shape)
		}
		n = lo
	}
	return int(n), nil
}

// writeOrder sorts names by element size, largest first, then by name: the
// reference writer's order. With an 8-aligned header every tensor then starts
// at a multiple of its element size, so readers may map it in place.
func (f *File) writeOrder() []string {
	names := f.Names()
	bySize(names, func(n string) string { return f.Tensors[n].DType })
	return names
}

// bySize stably sorts sorted names by the element size of their dtype,
// largest first.
func bySize(names []string, dtypeOf func(string) string) {
	sort.SliceStable(names, func(i, j int) bool {
		return dtypeSizes[dtypeOf(names[i])] > dtypeSizes[dtypeOf(names[j])]
	})
}

// Write encodes f deterministically (see the package doc) to w.
func Write(w io.Writer, f *File) error {
	header, err := f.header()
	if err != nil {
		return err
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(header)))
	bw := bufio.NewWriter(w)
	bw.Write(lenBuf[:])
	bw.Write(header)
	for _, name := range f.writeOrder() {
		bw.Write(f.Tensors[name].Data)
	}
	return bw.Flush() // bufio keeps the first write error and returns it here
}

// header builds the padded JSON header. It is written by hand rather than
// with json.Marshal of a map so that the metadata comes first and tensors
// appear in buffer order, as in files from the reference writer.
func (f *File) header() ([]byte, error) {
	names := f.writeOrder()
	es := make([]Entry, len(names))
	for i, name := range names {
		t := f.Tensors[name]
		if err := t.check(name); err != nil {
			return nil, err
		}
		es[i] = Entry{Name: name, DType: t.DType, Shape: t.Shape}
	}
	h, _, err := encodeHeader(f.Metadata, es)
	return h, err
}

// encodeHeader builds the padded JSON header of tensors es, laid out in
// that order, and returns each one's byte span in the data buffer.
func encodeHeader(metadata map[string]string, es []Entry) ([]byte, [][2]int, error) {
	var h bytes.Buffer
	h.WriteByte('{')
	first := true
	if len(metadata) > 0 {
		md, err := json.Marshal(metadata) // sorts keys
		if err != nil {
			return nil, nil, fmt.Errorf("safetensors: metadata: %w", err)
		}
		h.WriteString(`"` + metadataKey + `":`)
		h.Write(md)
		first = false
	}
	off := 0
	spans := make([][2]int, len(es))
	for i, e := range es {
		size, err := byteSize(e.Name, e.DType, e.Shape)
		if err != nil {
			return nil, nil, err
		}
		if !first {
			h.WriteByte(',')
		}
		first = false
		key, _ := json.Marshal(e.Name)
		h.Write(key)
		h.WriteString(`:{"dtype":"` + e.DType + `","shape":[`)
		for i, d := range e.Shape {
			if i > 0 {
				h.WriteByte(',')
			}
			h.WriteString(strconv.Itoa(d))
		}
		h.WriteString(`],"data_offsets":[` + strconv.Itoa(off) + "," + strconv.Itoa(off+size) + "]}")
		spans[i] = [2]int{off, off + size}
		off += size
	}
	h.WriteByte('}')
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}
	if h.Len() > MaxHeaderSize {
		return nil, nil, fmt.Errorf("safetensors: header of %d bytes exceeds the %d-byte limit", h.Len(), MaxHeaderSize)
	}
	return h.Bytes(), spans, nil
}

// Marshal returns the encoded file as one byte slice.
func Marshal(f *File) ([]byte, error) {
	var b bytes.Buffer
	if err := Write(&b, f); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// WriteFile writes f to path, replacing it only once the whole file is
// written, so an interrupted save never leaves a truncated checkpoint.
func WriteFile(path string, f *File) error {
	b, err := Marshal(f)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
