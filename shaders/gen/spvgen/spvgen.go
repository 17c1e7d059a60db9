// Package spvgen compiles the shader table with the pinned glslc, validates
// the modules with spirv-val, and writes or checks shaders/spv and
// shaders/registry_gen.go. It is shared by the generator command
// (shaders/gen) and by the shaders tests, and does not import the shaders
// package so that it works while the generated files are missing or broken.
package spvgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
)

// PinnedVersion is the exact `glslc --version` text (before the "Target:"
// line) of Debian trixie's glslc 2025.2-1, the one compiler every committed
// .spv is built with. Its spirv-tools line matters too: -O runs that
// spirv-opt. To move the pin, change scripts/fetch-glslc.sh and this
// together, then run make shaders.
const PinnedVersion = "shaderc 2025.2-1\nspirv-tools 2025.1~rc1-1\nglslang 15.1.0+1.4.309.0-1"

// ErrNoCompiler means no glslc with PinnedVersion was found; run
// scripts/fetch-glslc.sh.
var ErrNoCompiler = errors.New("spvgen: pinned glslc not found")

// Job is one variant to compile (a copy of shaders.Variant).
type Job struct {
	Name       string
	Source     string // relative to the shaders directory
	Defines    map[string]string
	NoOptimize bool
	Spirv      string // target env, e.g. "vulkan1.2"
	// BFloat16 retypes the validated module's float16_t cooperative
	// matrices to bfloat16 (RetypeBFloat16).
	BFloat16 bool
}

// Tools are the compiler and validator to run.
type Tools struct {
	Glslc    string
	SpirvVal string
	Version  string // glslc's version text, == PinnedVersion
}

// ToolEnv names the variables the generator and the tests read to override
// the tools: ToolEnv{os.Getenv("GLSLC"), os.Getenv("SPIRV_VAL")}.
type ToolEnv struct{ Glslc, SpirvVal string }

// FindTools locates the pinned glslc and a spirv-val. Order: env.Glslc
// (only it, when set); <root>/.tools/bin/glslc; glslc on PATH. A glslc
// whose version is not PinnedVersion is refused. spirv-val: env.SpirvVal,
// then <root>/.tools/bin/spirv-val, then PATH.
func FindTools(root string, env ToolEnv) (Tools, error) {
	var cands []string
	if g := env.Glslc; g != "" {
		cands = []string{g}
	} else {
		cands = append(cands, filepath.Join(root, ".tools", "bin", "glslc"))
		if p, err := exec.LookPath("glslc"); err == nil {
			cands = append(cands, p)
		}
	}
	var tried []string
	t := Tools{}
	for _, c := range cands {
		v, err := glslcVersion(c)
		switch {
		case err != nil:
			tried = append(tried, fmt.Sprintf("%s: %v", c, err))
		case v != PinnedVersion:
			tried = append(tried, fmt.Sprintf("%s: version mismatch:\n      have: %s\n      want: %s",
				c, strings.ReplaceAll(v, "\n", " | "), strings.ReplaceAll(PinnedVersion, "\n", " | ")))
		default:
			t.Glslc, t.Version = absPath(c), v
		}
		if t.Glslc != "" {
			break
		}
	}
	if t.Glslc == "" {
		return t, fmt.Errorf("%w (run scripts/fetch-glslc.sh, or set GLSLC to a glslc 2025.2-1); tried:\n  %s",
			ErrNoCompiler, strings.Join(tried, "\n  "))
	}
	t.SpirvVal = env.SpirvVal
	if t.SpirvVal == "" {
		t.SpirvVal = filepath.Join(root, ".tools", "bin", "spirv-val")
		if _, err := os.Stat(t.SpirvVal); err != nil {
			p, err := exec.LookPath("spirv-val")
			if err != nil {
				return t, fmt.Errorf("spvgen: no spirv-val (run scripts/fetch-glslc.sh, or set SPIRV_VAL)")
			}
			t.SpirvVal = p
		}
	}
	t.SpirvVal = absPath(t.SpirvVal)
	return t, nil
}

// absPath makes a relative path with a directory absolute, since tools run
// in other working directories; a bare name stays a PATH lookup.
func absPath(p string) string {
	if strings.ContainsRune(p, os.PathSeparator) {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
	}
	return p
}

func glslcVersion(path string) (string, error) {
	if !strings.ContainsRune(path, os.PathSeparator) {
		p, err := exec.LookPath(path)
		if err != nil {
			return "", fmt.Errorf("not on PATH")
		}
		path = p
	} else if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("not found")
	}
	out, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("--version failed: %v: %s", err, bytes.TrimSpace(out))
	}
	s := string(out)
	if i := strings.Index(s, "\nTarget:"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s), nil
}

// Compile builds every job into outDir/<name>.spv, in parallel (workers <= 0
// means one per CPU). glslc runs in srcDir with -I include. Any output from
// glslc or spirv-val, warnings included, is an error. All failures are
// reported, sorted by variant name.
func Compile(ctx context.Context, t Tools, srcDir string, jobs []Job, outDir string, workers int) error {
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	srcAbs, err := filepath.Abs(srcDir)
	if err != nil {
		return err
	}
	outAbs, err := filepath.Abs(outDir)
	if err != nil {
		return err
	}
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			errs[i] = compileOne(ctx, t, srcAbs, jobs[i], filepath.Join(outAbs, jobs[i].Name+".spv"))
		}(i)
	}
	wg.Wait()
	return errors.Join(errs...) // jobs are in table order; errors keep it
}

// GlslcArgs are the glslc arguments for j (without the program name).
func GlslcArgs(j Job, out string) []string {
	args := []string{"-fshader-stage=compute", "--target-env=" + j.Spirv}
	if !j.NoOptimize {
		args = append(args, "-O")
	}
	keys := make([]string, 0, len(j.Defines))
	for k := range j.Defines {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if v := j.Defines[k]; v != "" {
			args = append(args, "-D"+k+"="+v)
		} else {
			args = append(args, "-D"+k)
		}
	}
	return append(args, "-I", "include", "-o", out, j.Source)
}

func compileOne(ctx context.Context, t Tools, srcDir string, j Job, out string) error {
	args := GlslcArgs(j, out)
	cmd := exec.CommandContext(ctx, t.Glslc, args...)
	cmd.Dir = srcDir
	b, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(b)) > 0 {
		return fmt.Errorf("%s: glslc %s: %v\n%s", j.Name, strings.Join(args, " "), exitStatus(err), indent(b))
	}
	vargs := []string{"--target-env", j.Spirv, out}
	cmd = exec.CommandContext(ctx, t.SpirvVal, vargs...)
	b, err = cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(b)) > 0 {
		return fmt.Errorf("%s: spirv-val %s: %v\n%s", j.Name, strings.Join(vargs, " "), exitStatus(err), indent(b))
	}
	if j.BFloat16 {
		// spirv-val 2025.1 predates SPV_KHR_bfloat16: the f16 module was
		// validated above, and the retype itself is checked and tested.
		m, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		if m, err = RetypeBFloat16(m); err != nil {
			return fmt.Errorf("%s: %w", j.Name, err)
		}
		return os.WriteFile(out, m, 0o644)
	}
	return nil
}

func exitStatus(err error) string {
	if err == nil {
		return "produced output (warnings are errors)"
	}
	return err.Error()
}

func indent(b []byte) string {
	s := strings.TrimRight(string(b), "\n")
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
