// types.glsl: storage-type conversions shared by every kernel.
//
// Storage types are selected per buffer by defines whose value is one of
// TYPE_F32, TYPE_F16, TYPE_BF16, TYPE_NF4. bf16 is stored as uint16_t and
// widened with a shift, because most devices (lavapipe among them) have no
// bf16 shader type. Narrowing conversions round to nearest even in integer
// arithmetic, so results do not depend on the driver's float conversion mode.
#ifndef VKLORA_TYPES_GLSL
#define VKLORA_TYPES_GLSL

#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_int16 : require

#define TYPE_F32 1
#define TYPE_F16 2
#define TYPE_BF16 3
#define TYPE_NF4 4

float bf16_to_f32(uint h) { return uintBitsToFloat(h << 16); }

// Round to nearest even; NaN stays NaN (quiet bit set).
uint f32_to_bf16(float f) {
	uint b = floatBitsToUint(f);
	if ((b & 0x7fffffffu) > 0x7f800000u) {
		return (b >> 16) | 0x40u;
	}
	b += 0x7fffu + ((b >> 16) & 1u);
	return b >> 16;
}

float f16_to_f32(uint h) { return unpackHalf2x16(h).x; }

// IEEE binary16 round to nearest even, subnormals and overflow included.
uint f32_to_f16(float f) {
	uint x = floatBitsToUint(f);
	uint sign = (x >> 16) & 0x8000u;
	uint ax = x & 0x7fffffffu;
	if (ax > 0x7f800000u) {
		return sign | 0x7e00u; // NaN
	}
	if (ax >= 0x477ff000u) {
		return sign | 0x7c00u; // rounds to or beyond 65520: infinity
	}
	if (ax < 0x38800000u) { // below the smallest normal half: subnormal or zero
		if (ax < 0x33000000u) {
			return sign; // below half the smallest subnormal (ties to zero, which is even)
		}
		uint e = ax >> 23;
		uint m = (ax & 0x7fffffu) | 0x800000u;
		uint shift = 126u - e; // value = m·2^(e-150); in units of 2^-24 that is m >> (126 - e)
		uint q = m >> shift;
		uint rem = m & ((1u << shift) - 1u);
		uint half_ = 1u << (shift - 1u);
		if (rem > half_ || (rem == half_ && (q & 1u) == 1u)) {
			q += 1u;
		}
		return sign | q;
	}
	uint r = ax - 0x38000000u; // rebias exponent from 127 to 15 (112 << 23)
	uint q = r >> 13;
	uint rem = r & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (q & 1u) == 1u)) {
		q += 1u;
	}
	return sign | q;
}

#endif
