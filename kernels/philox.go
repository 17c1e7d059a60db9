package kernels

import "math/bits"

// Philox4 is Philox-4x32-10's four 32-bit words at counter (ctr, 0) under
// key: the generator of shaders/include/philox.glsl, bit for bit, so the
// host can reproduce any device dropout mask.
func Philox4(ctr, key uint64) [4]uint32 {
	c := [4]uint32{uint32(ctr), uint32(ctr >> 32), 0, 0}
	k0, k1 := uint32(key), uint32(key>>32)
	for r := 0; r < 10; r++ {
		hi0, lo0 := bits.Mul32(0xD2511F53, c[0])
		hi1, lo1 := bits.Mul32(0xCD9E8D57, c[2])
		c = [4]uint32{hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0}
		k0 += 0x9E3779B9
		k1 += 0xBB67AE85
	}
	return c
}

// Keep reports whether element e of the input is kept by the generated
// mask of s (s.Mask unset): word (Offset + e) mod 4 of the draw at counter
// ⌊(Offset + e)/4⌋ against the threshold, as dropout.comp decides it (one
// draw for four elements).
func (s DropoutSource) Keep(e uint64) bool {
	q := s.Offset + e
	return Philox4(q>>2, s.Seed)[q&3] >= s.Threshold()
}
