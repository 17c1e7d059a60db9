// philox.glsl: Philox-4x32-10 (Salmon et al., "Parallel random numbers: as
// easy as 1, 2, 3", SC 2011), the counter-based generator behind cuRAND's
// and PyTorch's CUDA dropout: a bijection of a 128-bit counter under a
// 64-bit key, so any element's random word is computed directly from its
// index. kernels.Philox4 in Go is the same function.
#ifndef VKLORA_PHILOX_GLSL
#define VKLORA_PHILOX_GLSL

// Philox-4x32-10's four 32-bit words at counter (ctr.x, ctr.y, 0, 0) under
// key.
uvec4 philox4(uvec2 ctr, uvec2 key) {
	uvec4 c = uvec4(ctr, 0u, 0u);
	uvec2 k = key;
	for (int r = 0; r < 10; r++) {
		uint hi0, lo0, hi1, lo1;
		umulExtended(0xD2511F53u, c.x, hi0, lo0);
		umulExtended(0xCD9E8D57u, c.z, hi1, lo1);
		c = uvec4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
		k += uvec2(0x9E3779B9u, 0xBB67AE85u);
	}
	return c;
}

#endif
