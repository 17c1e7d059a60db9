// out_c.glsl: the output buffer `c` of type C_TYPE at binding C_BINDING, with
// loadC/storeC in f32 (narrowing rounds to nearest even).
#if C_TYPE == TYPE_F32
layout(set = 0, binding = C_BINDING, std430) buffer BufC { float c[]; };
float loadC(uint i) { return c[i]; }
void storeC(uint i, float v) { c[i] = v; }
#elif C_TYPE == TYPE_F16
layout(set = 0, binding = C_BINDING, std430) buffer BufC { uint16_t c[]; };
float loadC(uint i) { return f16_to_f32(uint(c[i])); }
void storeC(uint i, float v) { c[i] = uint16_t(f32_to_f16(v)); }
#else
layout(set = 0, binding = C_BINDING, std430) buffer BufC { uint16_t c[]; };
float loadC(uint i) { return bf16_to_f32(uint(c[i])); }
void storeC(uint i, float v) { c[i] = uint16_t(f32_to_bf16(v)); }
#endif
