package shaders

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// DefaultSpirv is the glslc/spirv-val target environment of a variant that
// does not name one. Vulkan 1.2 runs on lavapipe (1.3) and NVIDIA (1.4).
const DefaultSpirv = "vulkan1.2"

// Variant is one compiled shader: a GLSL source plus defines.
//
// The generator (go run -tags shadergen ./shaders/gen) compiles each variant
// with the pinned glslc into spv/<Name>.spv and lists it in registry_gen.go.
type Variant struct {
	// Name follows <op>[_back]_<dtype>[_<variant>], e.g. matmul_lora_bf16_coopmat,
	// swiglu_back_f32; it is also the .spv file name and the Lookup key.
	Name string
	// Source is the GLSL file, relative to the shaders directory.
	Source string
	// Defines are passed as -DKEY=VALUE (-DKEY when VALUE is "").
	Defines map[string]string
	// NoOptimize builds without -O. spirv-opt has miscompiled cooperative
	// matrix and bf16 shaders (llama.cpp builds those unoptimised).
	NoOptimize bool
	// Spirv is the target environment, e.g. "vulkan1.3"; "" means DefaultSpirv.
	Spirv string
	// BFloat16 compiles the source with float16_t cooperative matrices,
	// validates that module, then retypes the 16-bit float to bfloat16
	// (SPV_KHR_bfloat16): the pinned glslang has no bfloat16_t.
	BFloat16 bool
}

// Dtypes are the dtype tokens of the name grammar. Add one here before using
// it in a variant name.
var Dtypes = []string{"f32", "f16", "bf16", "u32", "u16", "u8", "i32", "i8", "nf4"}

// Variants returns every shader variant, in a stable order. Build rows with
// loops over dtypes and flavours; never copy-paste near-identical lines.
func Variants() []Variant {
	var t variantTable

	// fill: one kernel per 32-bit word type; value is the word's bit pattern,
	// so f32 and i32 buffers use fill_u32 too.
	for _, dt := range []string{"u32"} {
		t.add(Variant{Name: variantName("fill", false, dt, ""), Source: "fill.comp"})
	}

	// matmul: one kernel source, variants by operand storage types. D is the
	// layer dtype; LoRA intermediates ([M, r]) and split-K partials are f32.
	// Suffixes name the operands that differ from D: a32/b32/c32 are f32
	// operands, nf4 a 4-bit base weight (rounded to D on load).
	for _, d := range []string{"f32", "f16", "bf16"} {
		for _, m := range matmulForms(d) {
			t.add(Variant{Name: variantName("matmul", false, d, m.flavour), Source: "matmul.comp", Defines: map[string]string{
				"A_TYPE": typeDefine(m.a), "B_TYPE": typeDefine(m.b), "C_TYPE": typeDefine(m.c),
				"B2_TYPE": typeDefine(d), "ROUND_TYPE": typeDefine(d),
			}})
		}
		// The rank products ([M, r], [r, in], [out, r]) on the narrow-output
		// kernel: the same forms but NF4, which is never an operand there.
		for _, m := range matmulForms(d) {
			if m.b == "nf4" {
				continue
			}
			t.add(Variant{Name: variantName("matmul", false, d, joinFlavour(m.flavour, "narrow")), Source: "matmul_narrow.comp", Defines: map[string]string{
				"A_TYPE": typeDefine(m.a), "B_TYPE": typeDefine(m.b), "C_TYPE": typeDefine(m.c),
			}})
		}
		t.add(Variant{Name: variantName("splitk_reduce", false, d, ""), Source: "splitk_reduce.comp",
			Defines: map[string]string{"C_TYPE": typeDefine(d)}})
	}

	// matmul on cooperative matrices: 16-bit A and B (or NF4 B), fp32
	// accumulation; the forms whose A and B are both D. Built unoptimised
	// (spirv-opt has miscompiled coopmat shaders elsewhere) for Vulkan 1.3;
	// bf16 is the f16 module retyped (see Variant.BFloat16).
	for _, d := range []string{"f16", "bf16"} {
		for _, m := range matmulForms(d) {
			if m.a != d || m.b == "f32" {
				continue
			}
			t.add(Variant{Name: variantName("matmul", false, d, joinFlavour(m.flavour, "coopmat")), Source: "matmul_coopmat.comp",
				Defines:    map[string]string{"D_TYPE": typeDefine(d), "B_TYPE": typeDefine(m.b), "C_TYPE": typeDefine(m.c)},
				NoOptimize: true, Spirv: "vulkan1.3", BFloat16: d == "bf16"})
			// The same forms on workgroup-scope matrices (VK_NV_cooperative_matrix2).
			{
				t.add(Variant{Name: variantName("matmul", false, d, joinFlavour(m.flavour, "cm2")), Source: "matmul_cm2.comp",
					Defines:    map[string]string{"D_TYPE": typeDefine(d), "B_TYPE": typeDefine(m.b), "C_TYPE": typeDefine(m.c)},
					NoOptimize: true, Spirv: "vulkan1.3", BFloat16: d == "bf16"})
			}
		}
	}

	// gated MLP elementwise kernels: activation × dtype × direction.
	for _, act := range []string{"swiglu", "geglu", "geglu_tanh"} {
		for _, d := range []string{"f32", "f16", "bf16"} {
			for _, back := range []bool{false, true} {
				defs := map[string]string{"D_TYPE": typeDefine(d), "ACT": "ACT_" + strings.ToUpper(act)}
				if back {
					defs["BACKWARD"] = ""
				}
				t.add(Variant{Name: variantName(act, back, d, ""), Source: "gated.comp", Defines: defs})
			}
		}
	}

	// add: elementwise dst += alpha·src (gradient accumulation) and the row
	// bias Y[m,n] += bias[n] of a base layer, one source, fp32 math.
	for _, d := range []string{"f32", "f16", "bf16"} {
		t.add(Variant{Name: variantName("add", false, d, ""), Source: "add.comp",
			Defines: map[string]string{"D_TYPE": typeDefine(d)}})
		t.add(Variant{Name: variantName("add_bias", false, d, ""), Source: "add.comp",
			Defines: map[string]string{"D_TYPE": typeDefine(d), "BIAS": ""}})
	}

	// NF4 weights outside the matmul: dense dequantization and blockwise
	// quantization, by the dtype of the dense side (output / input).
	for _, d := range []string{"f32", "f16", "bf16"} {
		defs := map[string]string{"D_TYPE": typeDefine(d)}
		t.add(Variant{Name: variantName("nf4_dequant", false, d, ""), Source: "nf4_dequant.comp", Defines: defs})
		t.add(Variant{Name: variantName("nf4_quantize", false, d, ""), Source: "nf4_quantize.comp", Defines: defs})
	}
	// Double-quantized NF4 scales decoded on the GPU; scales are always f32.
	t.add(Variant{Name: variantName("nf4_absmax", false, "f32", ""), Source: "nf4_absmax.comp"})

	peakVariants(&t)
	return t.vs
}

// peakVariants are the kernels of `lorabench peak`, which measures the
// device's own ceilings: scalar fp32 FMA, copy bandwidth and
// cooperative-matrix throughput, subgroup scope (one variant per
// component-type combination, named by the input type, flavour c16 for an
// f16 accumulator) and workgroup scope (VK_NV_cooperative_matrix2).
func peakVariants(t *variantTable) {
	t.add(Variant{Name: variantName("peak_fma", false, "f32", ""), Source: "peak_fma.comp"})
	t.add(Variant{Name: variantName("peak_copy", false, "u32", ""), Source: "peak_copy.comp"})
	for _, c := range []struct{ in, flavour, a, acc, zero string }{
		{"f16", "", "float16_t", "float", "0.0"},
		{"f16", "c16", "float16_t", "float16_t", "float16_t(0.0)"},
		{"bf16", "", "float16_t", "float", "0.0"},
		{"i8", "", "int8_t", "int32_t", "0"},
		{"u8", "", "uint8_t", "uint32_t", "0u"},
	} {
		t.add(Variant{Name: variantName("peak_coopmat", false, c.in, c.flavour), Source: "peak_coopmat.comp",
			Defines:    map[string]string{"A_ELEM": c.a, "C_ELEM": c.acc, "C_ZERO": c.zero},
			NoOptimize: true, Spirv: "vulkan1.3", BFloat16: c.in == "bf16"})
	}
	for _, d := range []string{"f16", "bf16"} {
		t.add(Variant{Name: variantName("peak_cm2", false, d, ""), Source: "peak_cm2.comp",
			NoOptimize: true, Spirv: "vulkan1.3", BFloat16: d == "bf16"})
	}
}

// joinFlavour appends a kernel suffix to an operand flavour ("" or e.g. "a32_c32").
func joinFlavour(flavour, kernel string) string {
	if flavour == "" {
		return kernel
	}
	return flavour + "_" + kernel
}

// variantTable accumulates variants and fills in defaults.
type variantTable struct{ vs []Variant }

func (t *variantTable) add(v Variant) {
	if v.Spirv == "" {
		v.Spirv = DefaultSpirv
	}
	if v.Defines == nil {
		v.Defines = map[string]string{}
	}
	t.vs = append(t.vs, v)
}

// variantName builds <op>[_back]_<dtype>[_<flavour>].
func variantName(op string, back bool, dtype, flavour string) string {
	n := op
	if back {
		n += "_back"
	}
	n += "_" + dtype
	if flavour != "" {
		n += "_" + flavour
	}
	return n
}

var (
	nameRE = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z][a-z0-9]*)*?(_back)?_(` +
		strings.Join(Dtypes, "|") + `)(_[a-z0-9]+)*$`)
	defineRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	spirvRE  = regexp.MustCompile(`^vulkan1\.[0-4]$`)
)

// ValidateVariants reports duplicate names, names outside the grammar, bad
// sources, define names or target environments.
func ValidateVariants(vs []Variant) error {
	var errs []string
	seen := map[string]bool{}
	for _, v := range vs {
		if seen[v.Name] {
			errs = append(errs, fmt.Sprintf("%s: duplicate name", v.Name))
		}
		seen[v.Name] = true
		if !nameRE.MatchString(v.Name) {
			errs = append(errs, fmt.Sprintf("%q: name is not <op>[_back]_<dtype>[_<variant>] with dtype in %v", v.Name, Dtypes))
		}
		if !strings.HasSuffix(v.Source, ".comp") || strings.Contains(v.Source, "..") {
			errs = append(errs, fmt.Sprintf("%s: source %q is not a .comp file in the shaders directory", v.Name, v.Source))
		}
		keys := make([]string, 0, len(v.Defines))
		for k := range v.Defines {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !defineRE.MatchString(k) || strings.ContainsAny(v.Defines[k], "\n\r") {
				errs = append(errs, fmt.Sprintf("%s: bad define %q=%q", v.Name, k, v.Defines[k]))
			}
		}
		if !spirvRE.MatchString(v.Spirv) {
			errs = append(errs, fmt.Sprintf("%s: target env %q is not vulkan1.0..vulkan1.4", v.Name, v.Spirv))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("shaders: bad variant table:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

// typeDefine maps a dtype token to the TYPE_* macro of include/types.glsl.
func typeDefine(dt string) string { return "TYPE_" + strings.ToUpper(dt) }

type matmulForm struct{ flavour, a, b, c string }

// matmulForms lists the operand-type combinations the LoRA layers use for
// layer dtype d: X·Wᵀ and G·W (all d), X·Aᵀ into f32 (c32), dA = GBᵀ·X
// (a32), dB = Gᵀ·XA (b32), their f32 split-K partials, and NF4 weights.
func matmulForms(d string) []matmulForm {
	if d == "f32" {
		return []matmulForm{{"", d, d, d}, {"nf4", d, "nf4", d}}
	}
	return []matmulForm{
		{"", d, d, d}, {"c32", d, d, "f32"},
		{"a32", "f32", d, d}, {"a32_c32", "f32", d, "f32"},
		{"b32", d, "f32", d}, {"b32_c32", d, "f32", "f32"},
		{"nf4", d, "nf4", d}, {"nf4_c32", d, "nf4", "f32"},
	}
}
