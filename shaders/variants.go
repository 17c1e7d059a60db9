package shaders

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/vklora/vklora/activation"
	"github.com/vklora/vklora/dtype"
)

// DefaultSpirv is the glslc/spirv-val target environment of a variant that
// does not name one. Vulkan 1.2 runs on lavapipe (1.3) and NVIDIA (1.4).
const DefaultSpirv = "vulkan1.2"

// Variant is one compiled shader: a GLSL source plus defines.
//
// The generator (go run -tags shadergen ./shaders/gen) compiles each variant
// with the pinned glslc into spv/<Name>.spv and lists it in registry_gen.go.
type Variant struct {
	// Name is its key's Name(): <op>[_back]_<dtype>[_<variant>], e.g.
	// matmul_bf16_c32_coopmat, swiglu_back_f32; also the .spv file name.
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
	// Buffers is the kernel's storage-buffer binding count (set 0,
	// bindings 0..Buffers-1) and PushSize its push-constant block in bytes
	// (the Go mirror's size, push.go): dispatch code takes both from here.
	Buffers, PushSize int
	// BFloat16 compiles the source with float16_t cooperative matrices,
	// validates that module, then retypes the 16-bit float to bfloat16
	// (SPV_KHR_bfloat16): the pinned glslang has no bfloat16_t.
	BFloat16 bool
}

// Dtypes are the dtype tokens of the name grammar. Add one here before using
// it in a variant name.
var Dtypes = []string{"f32", "f16", "bf16", "u32", "u16", "u8", "i32", "i8", "nf4"}

// Variants returns every shader variant, in a stable order. Rows are built
// from the key types (keys.go) with loops over dtypes and forms; never
// copy-paste near-identical lines.
func Variants() []Variant {
	var t variantTable
	floats := []dtype.DType{dtype.F32, dtype.F16, dtype.BF16}
	half := []dtype.DType{dtype.F16, dtype.BF16}

	// fill: one kernel per 32-bit word type; value is the word's bit pattern,
	// so f32 and i32 buffers use fill_u32 too.
	t.add(FillKey{}, Variant{Source: "fill.comp", Buffers: 1, PushSize: sizeOf[FillPush]()})

	// matmul: one kernel source per algorithm, variants by operand storage
	// types. D is the layer dtype; LoRA intermediates ([M, r]) and split-K
	// partials are f32.
	for _, d := range floats {
		for _, k := range MatmulKeys(MatmulTiled, d) {
			t.add(k, Variant{Source: "matmul.comp", Defines: map[string]string{
				"A_TYPE": typeDefine(k.aType()), "B_TYPE": typeDefine(k.bType()), "C_TYPE": typeDefine(k.cType()),
				"B2_TYPE": typeDefine(d.String()), "ROUND_TYPE": typeDefine(d.String()),
			}, Buffers: MatmulBuffers, PushSize: sizeOf[MatmulPush]()})
		}
		// The rank products ([M, r], [r, in], [out, r]) on the narrow-output
		// kernel: the same forms but NF4, which is never an operand there.
		for _, k := range MatmulKeys(MatmulNarrow, d) {
			t.add(k, Variant{Source: "matmul_narrow.comp", Defines: map[string]string{
				"A_TYPE": typeDefine(k.aType()), "B_TYPE": typeDefine(k.bType()), "C_TYPE": typeDefine(k.cType()),
			}, Buffers: MatmulBuffers, PushSize: sizeOf[MatmulPush]()})
		}
		t.add(SplitKReduceKey{C: d}, Variant{Source: "splitk_reduce.comp",
			Defines: map[string]string{"C_TYPE": typeDefine(d.String())}, Buffers: 2, PushSize: sizeOf[SplitKPush]()})
	}

	// matmul on cooperative matrices: 16-bit A and B (or NF4 B), fp32
	// accumulation; the forms whose A and B are both D, at subgroup scope
	// (KHR) and workgroup scope (NV coopmat2). Built unoptimised (spirv-opt
	// has miscompiled coopmat shaders elsewhere) for Vulkan 1.3; bf16 is the
	// f16 module retyped (see Variant.BFloat16).
	for _, d := range half {
		for _, kern := range []MatmulKernel{MatmulCoopMat, MatmulCM2} {
			src := map[MatmulKernel]string{MatmulCoopMat: "matmul_coopmat.comp", MatmulCM2: "matmul_cm2.comp"}[kern]
			for _, k := range MatmulKeys(kern, d) {
				defs := map[string]string{"D_TYPE": typeDefine(d.String()), "B_TYPE": typeDefine(k.bType()), "C_TYPE": typeDefine(k.cType())}
				if kern == MatmulCoopMat {
					defs["FM"], defs["FN"] = fmt.Sprint(k.FM), fmt.Sprint(k.FN)
				}
				bufs := MatmulBuffers
				if kern == MatmulCM2 {
					bufs = MatmulCM2Buffers
				}
				t.add(k, Variant{Source: src, Defines: defs, NoOptimize: true, Spirv: "vulkan1.3", BFloat16: d == dtype.BF16,
					Buffers: bufs, PushSize: sizeOf[MatmulPush]()})
			}
		}
	}

	// gated MLP elementwise kernels: activation × dtype × direction. The
	// forward binds e, g, h; the backward e, g, dh, h, de, dg.
	for _, act := range activation.All() {
		for _, d := range floats {
			for _, back := range []bool{false, true} {
				defs := map[string]string{"D_TYPE": typeDefine(d.String()), "ACT": "ACT_" + strings.ToUpper(act.String())}
				bufs := 3
				if back {
					defs["BACKWARD"] = ""
					bufs = 6
				}
				t.add(GatedKey{Act: act, D: d, Back: back}, Variant{Source: "gated.comp", Defines: defs,
					Buffers: bufs, PushSize: sizeOf[GatedPush]()})
			}
		}
	}

	// add: elementwise dst += alpha·src (gradient accumulation) and the row
	// bias Y[m,n] += bias[n] of a base layer, one source, fp32 math.
	for _, d := range floats {
		for _, bias := range []bool{false, true} {
			defs := map[string]string{"D_TYPE": typeDefine(d.String())}
			if bias {
				defs["BIAS"] = ""
			}
			t.add(AddKey{D: d, Bias: bias}, Variant{Source: "add.comp", Defines: defs, Buffers: 2, PushSize: sizeOf[AddPush]()})
		}
	}

	// NF4 weights outside the matmul: dense dequantization and blockwise
	// quantization, by the dtype of the dense side (output / input).
	for _, d := range floats {
		defs := map[string]string{"D_TYPE": typeDefine(d.String())}
		t.add(NF4Key{Op: NF4Dequant, D: d}, Variant{Source: "nf4_dequant.comp", Defines: defs, Buffers: 3, PushSize: sizeOf[NF4DequantPush]()})
		t.add(NF4Key{Op: NF4Quantize, D: d}, Variant{Source: "nf4_quantize.comp", Defines: defs, Buffers: 3, PushSize: sizeOf[NF4QuantizePush]()})
	}
	// Double-quantized NF4 scales decoded on the GPU; scales are always f32.
	t.add(NF4Key{Op: NF4Absmax, D: dtype.F32}, Variant{Source: "nf4_absmax.comp", Buffers: 4, PushSize: sizeOf[NF4AbsmaxPush]()})

	extVariants(&t)
	optimVariants(&t)
	peakVariants(&t)
	return t.vs
}

// optimVariants are the kernels of package optim: the AdamW update by
// parameter and gradient storage (an f32 master copy for 16-bit
// parameters), the two passes of the global gradient norm, and the f32
// gradient accumulator. All compute in f32.
func optimVariants(t *variantTable) {
	for _, k := range OptimKeys() {
		switch k := k.(type) {
		case AdamWKey:
			defs := map[string]string{"P_TYPE": typeDefine(k.P.String()), "G_TYPE": typeDefine(pick(k.G32, "f32", k.P.String()))}
			bufs := 5
			if k.P != dtype.F32 {
				defs["MASTER"] = ""
				bufs = 6
			}
			t.add(k, Variant{Source: "adamw.comp", Defines: defs, Buffers: bufs, PushSize: sizeOf[AdamWPush]()})
		case SumSqKey:
			defs := map[string]string{"D_TYPE": typeDefine(k.D.String())}
			if k.Final {
				defs["FINAL"] = ""
			}
			t.add(k, Variant{Source: "sumsq.comp", Defines: defs, Buffers: 2, PushSize: sizeOf[SumSqPush]()})
		case GradAccKey:
			t.add(k, Variant{Source: "gradacc.comp", Defines: map[string]string{"D_TYPE": typeDefine(k.D.String())},
				Buffers: 2, PushSize: sizeOf[GradAccPush]()})
		}
	}
}

// peakVariants are the kernels of `lorabench peak`, which measures the
// device's own ceilings: scalar fp32 FMA, copy bandwidth, cache-resident
// read bandwidth (for -tiles) and
// cooperative-matrix throughput at subgroup scope (one variant per
// component-type combination; C16 for an f16 accumulator) and workgroup
// scope (VK_NV_cooperative_matrix2).
func peakVariants(t *variantTable) {
	elem := map[PeakInput][3]string{ // A element, accumulator element, accumulator zero
		PeakF16: {"float16_t", "float", "0.0"}, PeakBF16: {"float16_t", "float", "0.0"},
		PeakI8: {"int8_t", "int32_t", "0"}, PeakU8: {"uint8_t", "uint32_t", "0u"},
	}
	for _, k := range PeakKeys() {
		switch k.Kind {
		case PeakFMA:
			t.add(k, Variant{Source: "peak_fma.comp", Buffers: 1, PushSize: sizeOf[PeakFMAPush]()})
		case PeakCopy:
			t.add(k, Variant{Source: "peak_copy.comp", Buffers: 2, PushSize: sizeOf[PeakCopyPush]()})
		case PeakRead:
			t.add(k, Variant{Source: "peak_read.comp", Buffers: 2, PushSize: sizeOf[PeakReadPush]()})
		case PeakCoopMat:
			e := elem[k.In]
			if k.C16 {
				e[1], e[2] = "float16_t", "float16_t(0.0)"
			}
			t.add(k, Variant{Source: "peak_coopmat.comp",
				Defines:    map[string]string{"A_ELEM": e[0], "C_ELEM": e[1], "C_ZERO": e[2]},
				NoOptimize: true, Spirv: "vulkan1.3", BFloat16: k.In == PeakBF16,
				Buffers: 3, PushSize: sizeOf[PeakCoopPush]()})
		case PeakCM2:
			t.add(k, Variant{Source: "peak_cm2.comp", NoOptimize: true, Spirv: "vulkan1.3", BFloat16: k.In == PeakBF16,
				Buffers: 3, PushSize: sizeOf[PeakCoopPush]()})
		case PeakTile: // built as matmul_coopmat is, so both run one loop
			t.add(k, Variant{Source: "peak_tile.comp", Defines: map[string]string{"FM": fmt.Sprint(k.FM), "FN": fmt.Sprint(k.FN)},
				NoOptimize: true, Spirv: "vulkan1.3", Buffers: 3, PushSize: sizeOf[PeakTilePush]()})
		case PeakDirect:
			t.add(k, Variant{Source: "peak_direct.comp", Defines: map[string]string{"FM": fmt.Sprint(k.FM), "FN": fmt.Sprint(k.FN)},
				NoOptimize: true, Spirv: "vulkan1.3", Buffers: 4, PushSize: sizeOf[PeakDirectPush]()})
		}
	}
}

// MatmulBuffers is the binding count of every matmul kernel: A, B, C, A2,
// B2 and the NF4 quantization state (bound to a dummy when unused).
const MatmulBuffers = 6

// MatmulCM2Buffers is the workgroup-scope kernel's binding count: the six
// above, then A, B, A2 and B2 of its K segments 1 and 2 (matmul_cm2.comp;
// bound to dummies when unused).
const MatmulCM2Buffers = MatmulBuffers + 8

// MatmulKeys lists the operand forms of kernel kern for layer dtype d: the
// combinations the LoRA layers use. X·Wᵀ and G·W (all D), X·Aᵀ into f32
// (C32), dA = GBᵀ·X (A32), dB = Gᵀ·XA (B32), their f32 split-K partials
// (C32), and NF4 weights. f32 layers have only the plain and NF4 forms; the
// narrow kernel never takes NF4; the cooperative kernels need A and B of D
// (or an NF4 B).
func MatmulKeys(kern MatmulKernel, d dtype.DType) []MatmulKey {
	var ks []MatmulKey
	if d == dtype.F32 {
		ks = []MatmulKey{{}, {NF4: true}}
	} else {
		ks = []MatmulKey{{}, {C32: true}, {A32: true}, {A32: true, C32: true},
			{B32: true}, {B32: true, C32: true}, {NF4: true}, {NF4: true, C32: true}}
	}
	var out []MatmulKey
	for _, k := range ks {
		k.Kernel, k.D = kern, d
		coop := kern == MatmulCoopMat || kern == MatmulCM2
		if (kern == MatmulNarrow && k.NF4) || (coop && (d == dtype.F32 || k.A32 || k.B32)) {
			continue
		}
		if kern != MatmulCoopMat {
			out = append(out, k)
			continue
		}
		for _, f := range CoopFrags {
			k.FM, k.FN = f[0], f[1]
			out = append(out, k)
		}
	}
	return out
}

// aType, bType and cType are the operands' storage type tokens.
func (k MatmulKey) aType() string { return pick(k.A32, "f32", k.D.String()) }
func (k MatmulKey) bType() string {
	return pick(k.NF4, "nf4", pick(k.B32, "f32", k.D.String()))
}
func (k MatmulKey) cType() string { return pick(k.C32, "f32", k.D.String()) }

func pick(cond bool, yes, no string) string {
	if cond {
		return yes
	}
	return no
}

// typeDefine maps a dtype token to the TYPE_* macro of include/types.glsl.
func typeDefine(dt string) string { return "TYPE_" + strings.ToUpper(dt) }

// variantTable accumulates variants and fills in defaults.
type variantTable struct{ vs []Variant }

func (t *variantTable) add(k Key, v Variant) {
	v.Name = k.Name()
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
