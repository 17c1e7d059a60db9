package spvgen

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// SPIR-V numbers used by RetypeBFloat16 (SPIR-V 1.6 and SPV_KHR_bfloat16).
const (
	spvMagic                      = 0x07230203
	opExtension                   = 10
	opCapability                  = 17
	opTypeFloat                   = 22
	opTypeCooperativeMatrixKHR    = 4456
	opName                        = 5
	opDecorate                    = 71
	opMemberDecorate              = 72
	capFloat16                    = 9
	capBFloat16TypeKHR            = 5116
	capBFloat16CooperativeMatrixK = 5118
	fpEncodingBFloat16KHR         = 0
)

// ErrRetype is wrapped by RetypeBFloat16's errors.
var ErrRetype = errors.New("spvgen: bfloat16 retype")

// RetypeBFloat16 turns a module whose cooperative matrices are float16_t
// into the same module on bfloat16 (SPV_KHR_bfloat16): the one
// `OpTypeFloat 16` gets the BFloat16KHR encoding, the BFloat16TypeKHR and
// BFloat16CooperativeMatrixKHR capabilities and the extension are declared,
// and the Float16 capability, now unused, is dropped.
//
// glslang 15.1 has no bfloat16_t, and this is the whole difference between
// an f16 and a bf16 cooperative-matrix kernel whose tiles are staged as raw
// 16-bit words. The rewrite is only sound when the 16-bit float type is
// used by nothing but OpTypeCooperativeMatrixKHR (no arithmetic, constants,
// conversions, pointers or vectors of it); anything else is refused.
func RetypeBFloat16(module []byte) ([]byte, error) {
	if len(module)%4 != 0 || len(module) < 20 {
		return nil, fmt.Errorf("%w: %d bytes is not a SPIR-V module", ErrRetype, len(module))
	}
	w := make([]uint32, len(module)/4)
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(module[4*i:])
	}
	if w[0] != spvMagic {
		return nil, fmt.Errorf("%w: bad magic %#x", ErrRetype, w[0])
	}
	type inst struct{ start, n int }
	var insts []inst
	for i := 5; i < len(w); {
		n := int(w[i] >> 16)
		if n == 0 || i+n > len(w) {
			return nil, fmt.Errorf("%w: truncated instruction at word %d", ErrRetype, i)
		}
		insts = append(insts, inst{i, n})
		i += n
	}

	// Find the 16-bit float type.
	half := uint32(0)
	for _, in := range insts {
		if w[in.start]&0xffff == opTypeFloat && in.n == 3 && w[in.start+2] == 16 {
			if half != 0 {
				return nil, fmt.Errorf("%w: more than one 16-bit float type", ErrRetype)
			}
			half = w[in.start+1]
		}
	}
	if half == 0 {
		return nil, fmt.Errorf("%w: no 16-bit float type", ErrRetype)
	}
	// Every other use must be the component type of a cooperative matrix.
	// Operands are scanned as plain words: a literal equal to the id would
	// be refused too, which errs on the safe side, except the literals of
	// decorations, which are never ids.
	for _, in := range insts {
		op := w[in.start] & 0xffff
		if op == opName || (op == opTypeFloat && w[in.start+1] == half) {
			continue
		}
		last := in.n
		if op == opDecorate || op == opMemberDecorate {
			last = 2
		}
		for k := 1; k < last; k++ {
			if w[in.start+k] != half {
				continue
			}
			if op == opTypeCooperativeMatrixKHR && k == 2 {
				continue
			}
			return nil, fmt.Errorf("%w: the 16-bit float type %%%d is used by opcode %d (word %d), not only by cooperative matrices",
				ErrRetype, half, op, in.start)
		}
	}

	lastCap := -1
	for idx, in := range insts {
		if w[in.start]&0xffff == opCapability {
			lastCap = idx
		}
	}
	if lastCap < 0 {
		return nil, fmt.Errorf("%w: module declares no capabilities", ErrRetype)
	}
	out := make([]uint32, 0, len(w)+16)
	out = append(out, w[:5]...)
	for idx, in := range insts {
		op := w[in.start] & 0xffff
		switch {
		case op == opCapability && w[in.start+1] == capFloat16:
		case op == opTypeFloat && w[in.start+1] == half:
			out = append(out, 4<<16|opTypeFloat, half, 16, fpEncodingBFloat16KHR)
		default:
			out = append(out, w[in.start:in.start+in.n]...)
		}
		// After the last capability: the new capabilities and the extension
		// (the logical layout puts extensions right after capabilities).
		if idx == lastCap {
			out = append(out, 2<<16|opCapability, capBFloat16TypeKHR, 2<<16|opCapability, capBFloat16CooperativeMatrixK)
			out = append(out, extensionInst("SPV_KHR_bfloat16")...)
		}
	}
	b := make([]byte, 4*len(out))
	for i, x := range out {
		binary.LittleEndian.PutUint32(b[4*i:], x)
	}
	return b, nil
}

// extensionInst encodes OpExtension "name" (a nul-terminated, zero-padded
// UTF-8 literal).
func extensionInst(name string) []uint32 {
	lit := make([]byte, (len(name)/4+1)*4)
	copy(lit, name)
	ws := []uint32{uint32(1+len(lit)/4)<<16 | opExtension}
	for i := 0; i < len(lit); i += 4 {
		ws = append(ws, binary.LittleEndian.Uint32(lit[i:]))
	}
	return ws
}
