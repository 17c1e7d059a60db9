package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sort"

	"github.com/vklora/vklora/conformance"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/vk"
)

const checkSynopsis = "[-device SEL] [-json] FILE|DIR..."

// cmdCheck runs conformance cases (shared/docs/conformance.md) on the
// device: one row per expected tensor with its relative error, tolerance and
// verdict. Any failure exits 3; a file that cannot be read or run exits 1.
func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	device := fs.String("device", "", "device index or name substring")
	asJSON := fs.Bool("json", false, "one JSON object per expected tensor")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: lorabench check [-device SEL] [-json] FILE|DIR...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("check: name at least one .safetensors file or directory")
	}
	paths, err := conformance.Expand(fs.Args()...)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return fmt.Errorf("check: no .safetensors files in %v", fs.Args())
	}
	dev, err := vk.Open(vk.Options{Select: *device})
	if err != nil {
		return err
	}
	defer func() {
		if err := dev.Release(); err != nil {
			fmt.Fprintln(stderr, "lorabench check:", err)
		}
	}()
	eng, err := lora.NewEngine(dev)
	if err != nil {
		return err
	}
	if !*asJSON {
		fmt.Fprintf(stdout, "device: %s\n", dev.Info())
		fmt.Fprintf(stdout, "%-58s %-22s %10s %10s  %s\n", "case", "tensor", "rel err", "tol", "result")
	}
	failed, broken := 0, 0
	worst := map[string]float64{} // op/dtype → worst err/tol ratio, for the summary
	for _, p := range paths {
		c, err := conformance.Load(p)
		if err == nil {
			var res []conformance.Result
			if res, err = conformance.Run(eng, c); err == nil {
				failed += printResults(stdout, *asJSON, filepath.Base(p), res)
				k := c.Op + "/" + c.DType.String()
				for _, r := range res {
					worst[k] = max(worst[k], r.Err)
				}
				continue
			}
		}
		broken++
		fmt.Fprintf(stderr, "lorabench check: %s: %v\n", p, err)
	}
	if !*asJSON {
		fmt.Fprintf(stdout, "\nworst relative error by op/dtype:")
		for _, k := range sortedKeys(worst) {
			fmt.Fprintf(stdout, " %s %.2g;", k, worst[k])
		}
		fmt.Fprintf(stdout, "\n%d files, %d tensors failed, %d files could not run\n", len(paths), failed, broken)
	}
	switch {
	case broken > 0:
		return errReported
	case failed > 0:
		return fmt.Errorf("check: %d tensors outside tolerance: %w", failed, errValidation)
	}
	return nil
}

func printResults(w io.Writer, asJSON bool, name string, res []conformance.Result) (failed int) {
	for _, r := range res {
		verdict := "PASS"
		if !r.Pass {
			verdict = "FAIL"
			failed++
		}
		if asJSON {
			b, _ := json.Marshal(map[string]any{"case": name, "tensor": r.Key, "rel_err": jsonNum(r.Err), "tol": r.Tol, "pass": r.Pass})
			fmt.Fprintln(w, string(b))
			continue
		}
		fmt.Fprintf(w, "%-58s %-22s %10.3g %10.3g  %s\n", name, r.Key, r.Err, r.Tol, verdict)
	}
	return failed
}

func sortedKeys(m map[string]float64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
