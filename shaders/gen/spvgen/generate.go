package spvgen

import (
	"bytes"
	"context"
	"fmt"
	"go/format"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// RegistryFile is the generated registry, relative to the shaders directory.
const RegistryFile = "registry_gen.go"

// SpvDir holds the committed modules, relative to the shaders directory.
const SpvDir = "spv"

var safeName = regexp.MustCompile(`^[a-z0-9_]+$`)

func checkJobs(jobs []Job) error {
	seen := map[string]bool{}
	for _, j := range jobs {
		if !safeName.MatchString(j.Name) || seen[j.Name] {
			return fmt.Errorf("spvgen: bad or duplicate variant name %q", j.Name)
		}
		seen[j.Name] = true
	}
	return nil
}

// build compiles jobs into a fresh temporary directory and renders the
// registry; the caller removes the directory.
func build(ctx context.Context, t Tools, shadersDir string, jobs []Job, workers int) (tmp string, reg []byte, err error) {
	if err := checkJobs(jobs); err != nil {
		return "", nil, err
	}
	reg, err = RenderRegistry(jobs, t.Version)
	if err != nil {
		return "", nil, err
	}
	tmp, err = os.MkdirTemp("", "vklora-spv-")
	if err != nil {
		return "", nil, err
	}
	if err := Compile(ctx, t, shadersDir, jobs, tmp, workers); err != nil {
		os.RemoveAll(tmp)
		return "", nil, err
	}
	return tmp, reg, nil
}

// Report says what Generate changed.
type Report struct {
	Wrote    []string // .spv files whose bytes changed or were new
	Removed  []string // stale .spv files no longer in the table
	Registry bool     // registry_gen.go changed
}

// Generate compiles every job and brings shadersDir/spv and
// shadersDir/registry_gen.go up to date. Files whose bytes are unchanged are
// not rewritten. Nothing is written unless every job compiles and validates.
func Generate(ctx context.Context, t Tools, shadersDir string, jobs []Job, workers int) (Report, error) {
	var r Report
	tmp, reg, err := build(ctx, t, shadersDir, jobs, workers)
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(tmp)
	spv := filepath.Join(shadersDir, SpvDir)
	if err := os.MkdirAll(spv, 0o755); err != nil {
		return r, err
	}
	want := map[string]bool{}
	for _, j := range jobs {
		f := j.Name + ".spv"
		want[f] = true
		b, err := os.ReadFile(filepath.Join(tmp, f))
		if err != nil {
			return r, err
		}
		changed, err := writeIfChanged(filepath.Join(spv, f), b)
		if err != nil {
			return r, err
		}
		if changed {
			r.Wrote = append(r.Wrote, f)
		}
	}
	stale, err := staleFiles(spv, want)
	if err != nil {
		return r, err
	}
	for _, f := range stale {
		if err := os.Remove(filepath.Join(spv, f)); err != nil {
			return r, err
		}
		r.Removed = append(r.Removed, f)
	}
	r.Registry, err = writeIfChanged(filepath.Join(shadersDir, RegistryFile), reg)
	return r, err
}

// Check compiles every job into a temporary directory and compares the
// result with the committed files. It returns one line per mismatch (empty
// when everything is current); err is for failures to compile or read.
func Check(ctx context.Context, t Tools, shadersDir string, jobs []Job, workers int) ([]string, error) {
	tmp, reg, err := build(ctx, t, shadersDir, jobs, workers)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	spv := filepath.Join(shadersDir, SpvDir)
	var bad []string
	want := map[string]bool{}
	for _, j := range jobs {
		f := j.Name + ".spv"
		want[f] = true
		fresh, err := os.ReadFile(filepath.Join(tmp, f))
		if err != nil {
			return nil, err
		}
		old, err := os.ReadFile(filepath.Join(spv, f))
		switch {
		case os.IsNotExist(err):
			bad = append(bad, fmt.Sprintf("%s/%s: missing (variant %s from %s)", SpvDir, f, j.Name, j.Source))
		case err != nil:
			return nil, err
		case !bytes.Equal(old, fresh):
			bad = append(bad, fmt.Sprintf("%s/%s: differs from a fresh build of %s (%d bytes committed, %d fresh)",
				SpvDir, f, j.Source, len(old), len(fresh)))
		}
	}
	stale, err := staleFiles(spv, want)
	if err != nil {
		return nil, err
	}
	for _, f := range stale {
		bad = append(bad, fmt.Sprintf("%s/%s: stale, not in the variant table", SpvDir, f))
	}
	old, err := os.ReadFile(filepath.Join(shadersDir, RegistryFile))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	if !bytes.Equal(old, reg) {
		bad = append(bad, RegistryFile+": out of date with the variant table")
	}
	return bad, nil
}

func staleFiles(spv string, want map[string]bool) ([]string, error) {
	ents, err := os.ReadDir(spv)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".spv") && !want[n] {
			stale = append(stale, n)
		}
	}
	return stale, nil
}

func writeIfChanged(path string, b []byte) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return false, nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, path)
}

// RenderRegistry returns the gofmt'd registry_gen.go for jobs.
func RenderRegistry(jobs []Job, version string) ([]byte, error) {
	var b strings.Builder
	b.WriteString("// Code generated by shaders/gen (go generate ./shaders); DO NOT EDIT.\n\n")
	b.WriteString("//go:build !shadergen\n\n")
	b.WriteString("package shaders\n\nimport \"embed\"\n\n")
	b.WriteString("// embedded holds the modules built by the pinned compiler:\n")
	for _, l := range strings.Split(version, "\n") {
		fmt.Fprintf(&b, "//\t%s\n", l)
	}
	b.WriteString("//\n//go:embed spv/*.spv\nvar embedded embed.FS\n\n")
	b.WriteString("func init() {\n\tspvFS = embedded\n")
	fmt.Fprintf(&b, "\tcompilerVersion = %q\n", version)
	b.WriteString("\ttable = []entry{\n")
	for _, j := range jobs {
		fmt.Fprintf(&b, "\t\t{Name: %q, File: %q, Source: %q, TargetEnv: %q, Optimized: %v, BFloat16: %v, Defines: %s},\n",
			j.Name, SpvDir+"/"+j.Name+".spv", j.Source, j.Spirv, !j.NoOptimize, j.BFloat16, mapLit(j.Defines))
	}
	b.WriteString("\t}\n}\n")
	out, err := format.Source([]byte(b.String()))
	if err != nil {
		return nil, fmt.Errorf("spvgen: formatting %s: %v", RegistryFile, err)
	}
	return out, nil
}

func mapLit(m map[string]string) string {
	if len(m) == 0 {
		return "nil"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%q: %q", k, m[k])
	}
	return "map[string]string{" + strings.Join(parts, ", ") + "}"
}
