package shaders

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vklora/vklora/activation"
	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/shaders/gen/spvgen"
)

const spirvMagic = 0x07230203

func TestVariantTable(t *testing.T) {
	vs := Variants()
	if len(vs) == 0 {
		t.Fatal("Variants() is empty")
	}
	if err := ValidateVariants(vs); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if _, err := os.Stat(v.Source); err != nil {
			t.Errorf("%s: source: %v", v.Name, err)
		}
	}
	bad := []Variant{
		{Name: "fill", Source: "fill.comp", Spirv: DefaultSpirv},     // no dtype
		{Name: "fill_u32", Source: "fill.comp", Spirv: DefaultSpirv}, // duplicate below
		{Name: "fill_u32", Source: "fill.comp", Spirv: DefaultSpirv}, //
		{Name: "Fill_u32", Source: "fill.comp", Spirv: DefaultSpirv}, // case
		{Name: "fill_f32", Source: "../x.comp", Spirv: DefaultSpirv}, // source
		{Name: "fill_f16", Source: "fill.comp", Spirv: "vulkan2"},    // env
		{Name: "fill_i32", Source: "fill.comp", Spirv: DefaultSpirv, Defines: map[string]string{"A-B": "1"}},
	}
	err := ValidateVariants(bad)
	if err == nil {
		t.Fatal("ValidateVariants accepted a bad table")
	}
	if n := strings.Count(err.Error(), "\n"); n != 6 {
		t.Errorf("want 6 problems, got %d:\n%v", n, err)
	}
	for _, good := range []string{"matmul_lora_bf16_coopmat", "nf4_dequant_f16", "swiglu_back_f32", "fill_u32"} {
		if err := ValidateVariants([]Variant{{Name: good, Source: "x.comp", Spirv: DefaultSpirv}}); err != nil {
			t.Errorf("%s: %v", good, err)
		}
	}
}

// TestRegistryMatchesVariants: the table and the registry name the same
// shaders with the same metadata, and each module is SPIR-V.
func TestRegistryMatchesVariants(t *testing.T) {
	want := map[string]Variant{}
	for _, v := range Variants() {
		want[v.Name] = v
	}
	names := Names()
	if len(names) != len(want) {
		t.Errorf("registry has %d shaders, Variants() has %d: run `make shaders`", len(names), len(want))
	}
	for _, n := range names {
		v, ok := want[n]
		if !ok {
			t.Errorf("%s: in the registry but not in Variants(): run `make shaders`", n)
			continue
		}
		delete(want, n)
		s, err := LookupName(n)
		if err != nil {
			t.Error(err)
			continue
		}
		if s.Name != n || s.Source != v.Source || s.TargetEnv != v.Spirv || s.BFloat16 != v.BFloat16 || !sameDefines(s.Defines, v.Defines) {
			t.Errorf("%s: registry %+v differs from variant %+v: run `make shaders`", n, s, v)
		}
		if len(s.SPIRV) < 20 || len(s.SPIRV)%4 != 0 || binary.LittleEndian.Uint32(s.SPIRV) != spirvMagic {
			t.Errorf("%s: not a SPIR-V module", n)
		}
		if w := s.Words(); len(w) != len(s.SPIRV)/4 || w[0] != spirvMagic {
			t.Errorf("%s: Words() = %d words starting %#x", n, len(w), w[0])
		}
	}
	for n := range want {
		t.Errorf("%s: in Variants() but not in the registry: run `make shaders`", n)
	}
	if CompilerVersion() != spvgen.PinnedVersion {
		t.Errorf("registry built by %q, pin is %q", CompilerVersion(), spvgen.PinnedVersion)
	}
}

func sameDefines(a, b map[string]string) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}

func TestLookupUnknown(t *testing.T) {
	_, err := LookupName("fill_u23")
	if !errors.Is(err, ErrUnknown) {
		t.Fatalf("Lookup(fill_u23) error = %v, want ErrUnknown", err)
	}
	if !strings.Contains(err.Error(), "fill_u32") {
		t.Errorf("error does not suggest fill_u32: %v", err)
	}
}

func TestLookupReturnsCopies(t *testing.T) {
	a, err := Lookup(FillKey{})
	if err != nil {
		t.Fatal(err)
	}
	a.SPIRV[0] = 0
	a.Defines["X"] = "1"
	b, _ := Lookup(FillKey{})
	if b.SPIRV[0] == 0 || b.Defines["X"] != "" {
		t.Error("Lookup shares memory between calls")
	}
}

func jobs() []spvgen.Job {
	var js []spvgen.Job
	for _, v := range Variants() {
		js = append(js, spvgen.Job{Name: v.Name, Source: v.Source, Defines: v.Defines, NoOptimize: v.NoOptimize, Spirv: v.Spirv, BFloat16: v.BFloat16})
	}
	return js
}

var (
	toolsOnce sync.Once
	tools     spvgen.Tools
	toolsErr  error
	toolsSkip bool
)

// pinnedTools finds the pinned compiler, fetching it with
// scripts/fetch-glslc.sh when it is missing. Outside CI a failed fetch
// skips; with CI=true it fails.
func pinnedTools(t *testing.T) spvgen.Tools {
	t.Helper()
	toolsOnce.Do(func() {
		root := ".."
		tools, toolsErr = spvgen.FindTools(root, spvgen.ToolEnv{Glslc: os.Getenv("GLSLC"), SpirvVal: os.Getenv("SPIRV_VAL")})
		if errors.Is(toolsErr, spvgen.ErrNoCompiler) && os.Getenv("GLSLC") == "" {
			start := time.Now()
			out, err := exec.Command("bash", filepath.Join(root, "scripts", "fetch-glslc.sh")).CombinedOutput()
			if err != nil {
				toolsErr = errors.New("scripts/fetch-glslc.sh failed:\n" + string(out))
				toolsSkip = os.Getenv("CI") != "true"
				return
			}
			t.Logf("fetched the pinned glslc in %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))
			tools, toolsErr = spvgen.FindTools(root, spvgen.ToolEnv{Glslc: os.Getenv("GLSLC"), SpirvVal: os.Getenv("SPIRV_VAL")})
		}
	})
	if toolsSkip {
		t.Skipf("pinned glslc unavailable (CI would fail here): %v", toolsErr)
	}
	if toolsErr != nil {
		t.Fatal(toolsErr)
	}
	return tools
}

// TestSPIRVIsCurrent rebuilds every variant with the pinned compiler and
// fails when a committed .spv or registry_gen.go differs.
func TestSPIRVIsCurrent(t *testing.T) {
	tl := pinnedTools(t)
	start := time.Now()
	bad, err := spvgen.Check(context.Background(), tl, ".", jobs(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rebuilt %d variants in %v", len(Variants()), time.Since(start).Round(time.Millisecond))
	if len(bad) > 0 {
		t.Errorf("committed SPIR-V is not current; run `make shaders` and commit shaders/spv and shaders/registry_gen.go:\n  %s",
			strings.Join(bad, "\n  "))
	}
}

// TestCompileRejectsWarnings: a warning from glslc fails the build.
func TestCompileRejectsWarnings(t *testing.T) {
	tl := pinnedTools(t)
	dir := t.TempDir()
	src := "#version 450\n#extension GL_FOO_bar : enable\nlayout(local_size_x = 1) in;\nvoid main() {}\n"
	if err := os.WriteFile(filepath.Join(dir, "w.comp"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	j := []spvgen.Job{{Name: "w_f32", Source: "w.comp", Spirv: DefaultSpirv}}
	err := spvgen.Compile(context.Background(), tl, dir, j, dir, 1)
	if err == nil || !strings.Contains(err.Error(), "warning") {
		t.Fatalf("Compile with a warning: err = %v, want the warning", err)
	}
}

// TestKeysHaveModules checks every key of every family the dispatchers
// form against the compiled registry, and each key's layout against its
// family's push struct: a missing variant fails here, not at run time.
func TestKeysHaveModules(t *testing.T) {
	var keys []Key
	for _, d := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
		for _, kern := range []MatmulKernel{MatmulTiled, MatmulNarrow, MatmulCoopMat, MatmulCM2} {
			for _, k := range MatmulKeys(kern, d) {
				keys = append(keys, k)
			}
		}
		keys = append(keys, SplitKReduceKey{C: d}, AddKey{D: d}, AddKey{D: d, Bias: true},
			NF4Key{Op: NF4Dequant, D: d}, NF4Key{Op: NF4Quantize, D: d})
		for _, g := range activation.All() {
			keys = append(keys, GatedKey{Act: g, D: d}, GatedKey{Act: g, D: d, Back: true})
		}
	}
	keys = append(keys, NF4Key{Op: NF4Absmax, D: dtype.F32}, FillKey{})
	keys = append(keys, OptimKeys()...)
	for _, k := range PeakKeys() {
		keys = append(keys, k)
	}
	keys = append(keys, ExtKeys()...)
	if len(keys) != len(Variants()) {
		t.Errorf("%d keys, %d variants: a family's key list and the table disagree", len(keys), len(Variants()))
	}
	for _, k := range keys {
		s, err := Lookup(k)
		if err != nil {
			t.Errorf("%T %+v: %v", k, k, err)
			continue
		}
		b, p, err := Layout(k)
		if err != nil || b != s.Buffers || p != s.PushSize || b < 1 || p < 4 {
			t.Errorf("%s: layout %d buffers, %d push bytes (%v)", k.Name(), b, p, err)
		}
	}
	if Has(MatmulKey{Kernel: MatmulNarrow, D: dtype.F16, NF4: true}) {
		t.Error("the narrow kernel has no NF4 form, but Has says it does")
	}
	if _, _, err := Layout(MatmulKey{Kernel: MatmulCoopMat, D: dtype.F32}); !errors.Is(err, ErrUnknown) {
		t.Errorf("Layout of a missing key: %v, want ErrUnknown", err)
	}
}
