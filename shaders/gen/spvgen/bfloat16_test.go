package spvgen

import (
	"encoding/binary"
	"errors"
	"testing"
)

func module(insts ...[]uint32) []byte {
	w := []uint32{spvMagic, 0x00010600, 0, 100, 0}
	for _, in := range insts {
		w = append(w, in...)
	}
	b := make([]byte, 4*len(w))
	for i, x := range w {
		binary.LittleEndian.PutUint32(b[4*i:], x)
	}
	return b
}

func words(b []byte) []uint32 {
	w := make([]uint32, len(b)/4)
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return w
}

func op(code uint32, operands ...uint32) []uint32 {
	return append([]uint32{uint32(1+len(operands))<<16 | code}, operands...)
}

const (
	opTypeVector   = 23
	opFAdd         = 129
	opConstant     = 43
	opTypeFunction = 33
	opFConvert     = 115
)

// A decoration whose literal equals the type's id is no use of the type.
func TestRetypeBFloat16DecorationLiteral(t *testing.T) {
	body := [][]uint32{
		op(opDecorate, 20, 35, 7), // a decoration whose literal is 7
		op(opTypeFloat, 5, 32),
		op(opTypeFloat, 7, 16),
		op(opTypeCooperativeMatrixKHR, 8, 7, 3, 16, 16, 0),
	}
	in := module(append([][]uint32{op(opCapability, 1)}, body...)...)
	out, err := RetypeBFloat16(in)
	if err != nil {
		t.Fatal(err)
	}
	body[2] = op(opTypeFloat, 7, 16, fpEncodingBFloat16KHR)
	want := module(append([][]uint32{op(opCapability, 1),
		op(opCapability, capBFloat16TypeKHR), op(opCapability, capBFloat16CooperativeMatrixK),
		extensionInst("SPV_KHR_bfloat16")}, body...)...)
	if string(out) != string(want) {
		t.Fatalf("retyped module\n got %x\nwant %x", words(out), words(want))
	}
}

func TestRetypeBFloat16(t *testing.T) {
	in := module(
		op(opCapability, 1), op(opCapability, capFloat16), op(opCapability, 6022),
		op(opTypeFloat, 5, 32),
		op(opTypeFloat, 7, 16),
		op(opTypeCooperativeMatrixKHR, 8, 7, 3, 16, 16, 0),
		op(opTypeCooperativeMatrixKHR, 9, 5, 3, 16, 16, 2),
	)
	out, err := RetypeBFloat16(in)
	if err != nil {
		t.Fatal(err)
	}
	want := module(
		op(opCapability, 1), op(opCapability, 6022),
		op(opCapability, capBFloat16TypeKHR), op(opCapability, capBFloat16CooperativeMatrixK),
		extensionInst("SPV_KHR_bfloat16"),
		op(opTypeFloat, 5, 32),
		op(opTypeFloat, 7, 16, fpEncodingBFloat16KHR),
		op(opTypeCooperativeMatrixKHR, 8, 7, 3, 16, 16, 0),
		op(opTypeCooperativeMatrixKHR, 9, 5, 3, 16, 16, 2),
	)
	if string(out) != string(want) {
		t.Fatalf("retyped module\n got %x\nwant %x", words(out), words(want))
	}
	// "SPV_KHR_bfloat16" is 16 bytes: the literal takes a fifth, zero word.
	if e := extensionInst("SPV_KHR_bfloat16"); len(e) != 6 || e[5] != 0 || e[0]>>16 != 6 {
		t.Errorf("OpExtension encoding %x", e)
	}
}

func TestRetypeBFloat16Refuses(t *testing.T) {
	caps := op(opCapability, 1)
	half := op(opTypeFloat, 7, 16)
	for name, m := range map[string][]byte{
		"no half":       module(caps, op(opTypeFloat, 5, 32)),
		"two halves":    module(caps, half, op(opTypeFloat, 8, 16)),
		"vector of it":  module(caps, half, op(opTypeVector, 9, 7, 4)),
		"arithmetic":    module(caps, half, op(opFAdd, 7, 9, 10, 11)),
		"a constant":    module(caps, half, op(opConstant, 7, 9, 0x3c00)),
		"a parameter":   module(caps, half, op(opTypeFunction, 10, 5, 7)),
		"a conversion":  module(caps, half, op(opFConvert, 7, 9, 10)),
		"no capability": module(half, op(opTypeCooperativeMatrixKHR, 8, 7, 3, 16, 16, 0)),
		"truncated":     module(caps, half)[:4*8],
		"not spir-v":    []byte("not a module at all!"),
	} {
		if _, err := RetypeBFloat16(m); !errors.Is(err, ErrRetype) {
			t.Errorf("%s: err = %v, want ErrRetype", name, err)
		}
	}
}
