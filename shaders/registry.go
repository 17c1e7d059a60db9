package shaders

//go:generate go run -tags shadergen ./gen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"
)

// Set by registry_gen.go's init. With -tags shadergen (used only by the
// generator) they stay empty.
var (
	spvFS           fs.FS
	table           []entry
	compilerVersion string
)

// entry is one row of the generated table.
type entry struct {
	Name      string
	File      string // path inside spvFS
	Source    string
	TargetEnv string
	Optimized bool
	BFloat16  bool // float16_t cooperative matrices retyped to bfloat16
	Defines   map[string]string
}

// Shader is one compiled variant.
type Shader struct {
	Name string
	// SPIRV is the module's bytes (little-endian words, magic 0x07230203).
	// A []byte is not guaranteed 4-byte aligned: hand Words() to
	// vkCreateShaderModule.
	SPIRV []byte
	// Source is the GLSL file it was built from, relative to shaders/.
	Source string
	// Defines are the -D macros it was built with (never nil).
	Defines map[string]string
	// TargetEnv is the Vulkan environment it was built and validated for,
	// e.g. "vulkan1.2"; the device must support at least that version.
	TargetEnv string
	// BFloat16 marks a module whose cooperative matrices were retyped to
	// bfloat16: it needs VK_KHR_shader_bfloat16's cooperative-matrix feature.
	BFloat16 bool
	// Buffers and PushSize are the kernel's binding count and push-constant
	// size, from the variant table.
	Buffers, PushSize int
}

// ErrUnknown is wrapped by Lookup's error for a name not in the registry.
var ErrUnknown = errors.New("unknown shader")

// Words returns the module as 32-bit words, decoded little-endian into a
// fresh, aligned slice: what VkShaderModuleCreateInfo.pCode wants.
func (s Shader) Words() []uint32 {
	w := make([]uint32, len(s.SPIRV)/4)
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(s.SPIRV[4*i:])
	}
	return w
}

// Lookup returns the shader of key k. The result is the caller's to
// modify. A key without a compiled module gives an error wrapping
// ErrUnknown that lists the closest names (the tests check that every key
// the dispatchers form has one, so this is a bug, not bad input).
func Lookup(k Key) (Shader, error) { return LookupName(k.Name()) }

// LookupName is Lookup by variant name, e.g. "fill_u32", for tools that list
// or inspect the registry.
func LookupName(name string) (Shader, error) {
	for _, e := range table {
		if e.Name != name {
			continue
		}
		b, err := fs.ReadFile(spvFS, e.File)
		if err != nil {
			return Shader{}, fmt.Errorf("shaders: %s: %w", name, err)
		}
		if len(b) < 20 || len(b)%4 != 0 || binary.LittleEndian.Uint32(b) != 0x07230203 {
			return Shader{}, fmt.Errorf("shaders: %s: %s is not a SPIR-V module", name, e.File)
		}
		defs := make(map[string]string, len(e.Defines))
		for k, v := range e.Defines {
			defs[k] = v
		}
		v, ok := variantByName()[name]
		if !ok {
			return Shader{}, fmt.Errorf("shaders: %s: in the generated registry but not in the variant table (run make shaders)", name)
		}
		return Shader{Name: e.Name, SPIRV: b, Source: e.Source, Defines: defs, TargetEnv: e.TargetEnv, BFloat16: e.BFloat16,
			Buffers: v.Buffers, PushSize: v.PushSize}, nil
	}
	if len(table) == 0 {
		return Shader{}, fmt.Errorf("shaders: %w %q: the registry is empty (built with -tags shadergen?)", ErrUnknown, name)
	}
	return Shader{}, fmt.Errorf("shaders: %w %q; closest: %s", ErrUnknown, name, strings.Join(closest(name, 5), ", "))
}

// Layout returns the binding count and push-constant size of key k's
// variant without reading its module: what a kernel cache needs to find a
// built pipeline.
func Layout(k Key) (buffers, pushSize int, err error) {
	v, ok := variantByName()[k.Name()]
	if !ok {
		return 0, 0, fmt.Errorf("shaders: %w %q; closest: %s", ErrUnknown, k.Name(), strings.Join(closest(k.Name(), 5), ", "))
	}
	return v.Buffers, v.PushSize, nil
}

// Has reports whether key k has a compiled module.
func Has(k Key) bool {
	for _, e := range table {
		if e.Name == k.Name() {
			return true
		}
	}
	return false
}

// variantByName indexes the variant table once.
var variantByName = sync.OnceValue(func() map[string]Variant {
	m := map[string]Variant{}
	for _, v := range Variants() {
		m[v.Name] = v
	}
	return m
})

// Names returns every shader name, sorted.
func Names() []string {
	n := make([]string, len(table))
	for i, e := range table {
		n[i] = e.Name
	}
	sort.Strings(n)
	return n
}

// CompilerVersion is the `glslc --version` text of the compiler that built
// the embedded modules.
func CompilerVersion() string { return compilerVersion }

// closest returns up to k names nearest to name by edit distance, ties by
// name.
func closest(name string, k int) []string {
	names := Names()
	d := make(map[string]int, len(names))
	for _, n := range names {
		d[n] = editDistance(name, n)
	}
	sort.SliceStable(names, func(i, j int) bool { return d[names[i]] < d[names[j]] })
	if len(names) > k {
		names = names[:k]
	}
	return names
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
