// Package shaders holds the engine's compute shaders: GLSL sources, the one
// table of variants built from them (Variants, in variants.go), and the
// committed SPIR-V embedded into the binary (spv/*.spv, registry_gen.go).
//
// # Using a shader
//
//	s, err := shaders.Lookup(shaders.FillKey{}) // typed key; error wraps ErrUnknown
//	words := s.Words()                          // []uint32 for VkShaderModuleCreateInfo.pCode
//
// Each family has a key type (keys.go: MatmulKey, GatedKey, AddKey, NF4Key,
// SplitKReduceKey, FillKey) whose Name() is the variant's name; dispatch
// code builds keys, never names, and the variant table is built from the
// same keys. Each row also carries the kernel's binding count and
// push-constant size (Shader.Buffers, Shader.PushSize; Layout), so that no
// call site repeats them; the Go mirrors of the push blocks are in push.go.
// Names() lists every name. Each Shader carries its GLSL Source, Defines and
// TargetEnv ("vulkan1.2" unless the variant says otherwise). Bindings, push
// constants and specialization constants are documented at the top of each
// .comp file; workgroup sizes are specialization constants (local_size_x_id
// = 0), never hard-coded, so the caller picks them from the device.
//
// # Names
//
// <op>[_back]_<dtype>[_<variant>], e.g. fill_u32, swiglu_back_f32,
// matmul_bf16_c32_coopmat. dtype is one of Dtypes.
//
// # Adding a variant
//
//  1. Write or extend a GLSL source in this directory (shared headers go in
//     shaders/include, which is on the include path: #include "x.glsl").
//  2. Add or extend a key type in keys.go (and its push struct in push.go),
//     then rows to Variants() in variants.go, in a loop over dtypes/forms.
//     Set NoOptimize for cooperative-matrix and bf16 kernels and Spirv
//     ("vulkan1.3") when the kernel needs newer SPIR-V.
//  3. Run `make shaders` (or `go generate ./shaders`): it fetches the pinned
//     compiler into .tools/ if needed, compiles every variant in parallel,
//     fails on any compiler or spirv-val output (warnings too), writes
//     spv/<name>.spv, deletes stale .spv files and rewrites registry_gen.go.
//  4. Commit the source, variants.go, spv/ and registry_gen.go together.
//
// # The pinned compiler
//
// Every module is built by Debian trixie's glslc 2025.2-1 (glslang 15.1,
// spirv-tools 2025.1~rc1), the first Debian glslc with cooperative matrix
// support; scripts/fetch-glslc.sh runs it on Debian 12 from .tools/trixie
// with trixie's own loader. Any other glslc (Debian 12's /usr/bin/glslc
// included) is refused, because the test TestSPIRVIsCurrent rebuilds every
// variant and requires the committed bytes to match exactly. go build never
// needs a compiler. GLSLC and SPIRV_VAL override the tools' paths.
package shaders
