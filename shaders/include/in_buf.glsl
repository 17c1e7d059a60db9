// in_buf.glsl: declares a read-only input buffer and its f32 loader.
// Before including, define IN_NAME (array name), IN_LOAD (loader name),
// IN_TYPE (TYPE_F32/F16/BF16) and IN_BINDING; they are undefined afterwards,
// so the header can be included once per input.
#if IN_TYPE == TYPE_F32
layout(set = 0, binding = IN_BINDING, std430) readonly buffer IN_BLOCK { float IN_NAME[]; };
float IN_LOAD(uint i) { return IN_NAME[i]; }
#elif IN_TYPE == TYPE_F16
layout(set = 0, binding = IN_BINDING, std430) readonly buffer IN_BLOCK { float16_t IN_NAME[]; };
float IN_LOAD(uint i) { return float(IN_NAME[i]); }
#else
layout(set = 0, binding = IN_BINDING, std430) readonly buffer IN_BLOCK { uint16_t IN_NAME[]; };
float IN_LOAD(uint i) { return bf16_to_f32(uint(IN_NAME[i])); }
#endif
#undef IN_NAME
#undef IN_LOAD
#undef IN_TYPE
#undef IN_BINDING
#undef IN_BLOCK
