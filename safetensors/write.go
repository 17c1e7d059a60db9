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
	if name == metadataKey {
		return fmt.Errorf("safetensors: %q is reserved for metadata and cannot name a tensor", name)
	}
	size, ok := dtypeSizes[t.DType]
	if !ok {
		return fmt.Errorf("safetensors: tensor %q has unknown dtype %q", name, t.DType)
	}
	n := uint64(size)
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("safetensors: tensor %q: shape %v has a negative dimension", name, t.Shape)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt {
			return fmt.Errorf("safetensors: tensor %q: shape %v overflows the byte count", name, t.Shape)
		}
		n = lo
	}
	if n != uint64(len(t.Data)) {
		return fmt.Errorf("safetensors: tensor %q: shape %v of %s needs %d bytes, got %d", name, t.Shape, t.DType, n, len(t.Data))
	}
	return nil
}

// writeOrder sorts names by element size, largest first, then by name: the
// reference writer's order. With an 8-aligned header every tensor then starts
// at a multiple of its element size, so readers may map it in place.
func (f *File) writeOrder() []string {
	names := f.Names()
	sort.SliceStable(names, func(i, j int) bool {
		return dtypeSizes[f.Tensors[names[i]].DType] > dtypeSizes[f.Tensors[names[j]].DType]
	})
	return names
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
	var h bytes.Buffer
	h.WriteByte('{')
	first := true
	if len(f.Metadata) > 0 {
		md, err := json.Marshal(f.Metadata) // sorts keys
		if err != nil {
			return nil, fmt.Errorf("safetensors: metadata: %w", err)
		}
		h.WriteString(`"` + metadataKey + `":`)
		h.Write(md)
		first = false
	}
	off := 0
	for _, name := range f.writeOrder() {
		t := f.Tensors[name]
		if err := t.check(name); err != nil {
			return nil, err
		}
		if !first {
			h.WriteByte(',')
		}
		first = false
		key, _ := json.Marshal(name)
		h.Write(key)
		h.WriteString(`:{"dtype":"` + t.DType + `","shape":[`)
		for i, d := range t.Shape {
			if i > 0 {
				h.WriteByte(',')
			}
			h.WriteString(strconv.Itoa(d))
		}
		h.WriteString(`],"data_offsets":[` + strconv.Itoa(off) + "," + strconv.Itoa(off+len(t.Data)) + "]}")
		off += len(t.Data)
	}
	h.WriteByte('}')
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}
	if h.Len() > MaxHeaderSize {
		return nil, fmt.Errorf("safetensors: header of %d bytes exceeds the %d-byte limit", h.Len(), MaxHeaderSize)
	}
	return h.Bytes(), nil
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
