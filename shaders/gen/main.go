// Command gen compiles every variant of shaders.Variants() with the pinned
// glslc (Debian trixie's 2025.2-1, installed by scripts/fetch-glslc.sh into
// .tools/bin), validates each module with spirv-val, writes
// shaders/spv/<name>.spv, removes stale .spv files and writes
// shaders/registry_gen.go.
//
//	go run -tags shadergen ./shaders/gen          # regenerate (make shaders)
//	go run -tags shadergen ./shaders/gen -check   # compare with committed files
//
// The shadergen tag leaves registry_gen.go out of the shaders package, so the
// generator builds even when the generated files are missing or conflicted.
// Env: GLSLC and SPIRV_VAL override the tools (GLSLC must still be the
// pinned version).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/shaders/gen/spvgen"
)

func main() {
	check := flag.Bool("check", false, "compile into a temp dir and compare with the committed files; change nothing")
	workers := flag.Int("j", 0, "parallel compiles (default: one per CPU)")
	flag.Parse()
	if err := run(*check, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "shaders/gen:", err)
		os.Exit(1)
	}
}

func run(check bool, workers int) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	dir := filepath.Join(root, "shaders")
	vs := shaders.Variants()
	if err := shaders.ValidateVariants(vs); err != nil {
		return err
	}
	jobs := toJobs(vs)
	tools, err := spvgen.FindTools(root, spvgen.ToolEnv{Glslc: os.Getenv("GLSLC"), SpirvVal: os.Getenv("SPIRV_VAL")})
	if err != nil {
		if errors.Is(err, spvgen.ErrNoCompiler) && os.Getenv("GLSLC") == "" {
			return fmt.Errorf("%v\n(make shaders fetches it automatically)", err)
		}
		return err
	}
	start := time.Now()
	ctx := context.Background()
	if check {
		bad, err := spvgen.Check(ctx, tools, dir, jobs, workers)
		if err != nil {
			return err
		}
		if len(bad) > 0 {
			return fmt.Errorf("committed SPIR-V is not current (run `make shaders`):\n  %s", strings.Join(bad, "\n  "))
		}
		fmt.Printf("shaders: %d variants match a fresh build (%s) [%.1fs]\n",
			len(jobs), firstLine(tools.Version), time.Since(start).Seconds())
		return nil
	}
	r, err := spvgen.Generate(ctx, tools, dir, jobs, workers)
	if err != nil {
		return err
	}
	for _, f := range r.Wrote {
		fmt.Printf("  wrote   shaders/spv/%s\n", f)
	}
	for _, f := range r.Removed {
		fmt.Printf("  removed shaders/spv/%s (stale)\n", f)
	}
	if r.Registry {
		fmt.Printf("  wrote   shaders/%s\n", spvgen.RegistryFile)
	}
	fmt.Printf("shaders: %d variants compiled with %s; %d .spv changed, %d removed [%.1fs]\n",
		len(jobs), firstLine(tools.Version), len(r.Wrote), len(r.Removed), time.Since(start).Seconds())
	return nil
}

// toJobs converts the variant table for spvgen.
func toJobs(vs []shaders.Variant) []spvgen.Job {
	jobs := make([]spvgen.Job, len(vs))
	for i, v := range vs {
		jobs[i] = spvgen.Job{Name: v.Name, Source: v.Source, Defines: v.Defines, NoOptimize: v.NoOptimize, Spirv: v.Spirv, BFloat16: v.BFloat16}
	}
	return jobs
}

// repoRoot walks up from the working directory to go.mod, so both
// `go generate ./shaders` (cwd shaders/) and `go run ./shaders/gen` work.
func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "shaders", "variants.go")); err != nil {
				return "", fmt.Errorf("%s has go.mod but no shaders/variants.go", d)
			}
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("go.mod not found above the working directory")
		}
		d = p
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
