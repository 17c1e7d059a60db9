package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/vklora/vklora/conformance"
	"github.com/vklora/vklora/safetensors"
)

const checkSynopsis = "[-device SEL] [-json] FILE|DIR..."

// cmdCheck runs conformance cases (safetensors files of inputs, weights and
// the outputs and gradients PyTorch computed, written by
// conformance/gen/make_vectors.py, or by PEFT for its extensions,
// conformance/gen/peft_vectors.py; the format is docs/CONFORMANCE.md) on the
// device: one row per expected tensor with its relative error, tolerance and
// verdict, the case's extensions named after its file name. Any tensor outside its tolerance exits 3; a file that cannot be
// read or run, or Vulkan validation-layer messages, exit 1.
func cmdCheck(args []string, stdout, stderr io.Writer) (err error) {
	flags := newFlags("check", checkSynopsis, stderr)
	device := flags.String("device", "", "device index or name substring (default $VKLORA_DEVICE, else the first discrete GPU)")
	asJSON := flags.Bool("json", false, "one JSON object per expected tensor per line instead of a table")
	if err := parse(flags, args); err != nil {
		return err
	}
	if flags.NArg() == 0 {
		return usagef("name at least one .safetensors file or directory")
	}
	paths, err := conformance.Expand(flags.Args()...)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return fmt.Errorf("no .safetensors files in %v", flags.Args())
	}
	// Refuse what is not a regular file before opening anything: a FIFO
	// would block the open, a device such as /dev/zero never ends.
	broken := 0
	var files []string
	for _, p := range paths {
		if err := regularFile(p); err != nil {
			broken++
			fmt.Fprintf(stderr, "lorabench check: %v\n", err)
			continue
		}
		files = append(files, p)
	}
	if len(files) == 0 {
		return errReported
	}
	dev, err := openDevice(*device)
	if err != nil {
		return err
	}
	defer func() {
		err = withValidation(err)
		if rerr := dev.Release(); rerr != nil && err == nil {
			err = rerr
		}
	}()
	validationMessages() // start clean
	eng, err := newEngine(dev)
	if err != nil {
		return err
	}
	if !*asJSON {
		fmt.Fprintf(stdout, "device: %s\n", dev.Info())
		fmt.Fprintf(stdout, "%-58s %-28s %10s %10s  %s\n", "case", "tensor", "rel err", "tol", "result")
	}
	// Every case is loaded first, so that the kernels of all of them are
	// built in parallel (conformance.Prepare) before the first runs: on a
	// cold GPU driver one cooperative-matrix kernel can take tens of
	// seconds. A case that cannot run stops the preparation there; its Run
	// below reports why.
	cases := make([]*conformance.Case, len(files))
	loadErrs := make([]error, len(files))
	var loaded []*conformance.Case
	for i, p := range files {
		if cases[i], loadErrs[i] = loadCase(p); loadErrs[i] == nil {
			loaded = append(loaded, cases[i])
		}
	}
	_ = conformance.Prepare(eng, loaded)
	failed := 0
	worst := map[string]float64{} // op/dtype → worst relative error, for the summary
	for i, p := range files {
		c, err := cases[i], loadErrs[i]
		if err == nil {
			var res []conformance.Result
			if res, err = conformance.Run(eng, c); err == nil {
				feats := caseFeatures(c)
				failed += printResults(stdout, *asJSON, filepath.Base(p), feats, res)
				k := c.Op + "/" + c.DType.String()
				if feats != "" {
					k += "/ext" // PEFT's extensions apart from the plain cases
				}
				for _, r := range res {
					worst[k] = max(worst[k], r.Err)
				}
				continue
			}
			// Run's errors name the file (c.Path), as loadCase's do.
		}
		broken++
		fmt.Fprintf(stderr, "lorabench check: %v\n", err)
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
		return fmt.Errorf("%d tensors outside tolerance: %w", failed, errValidation)
	}
	return nil
}

// regularFile refuses p unless it is (or links to) a regular file. The
// error names p once.
func regularFile(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err // *fs.PathError: "stat p: …"
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file (%s)", p, fileKind(st.Mode()))
	}
	return nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	}
	return "mode " + m.String()
}

// loadCase reads the conformance case at p. It never reads more than the
// file's header promises: the 8-byte header length and the header come
// first, and the file must be exactly as long as the header says (8 + header
// + the end of the last tensor) before its data is allocated and read. Every
// error names p once.
func loadCase(p string) (*conformance.Case, error) {
	if err := regularFile(p); err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() { // replaced since the check above
		return nil, fmt.Errorf("%s: not a regular file (%s)", p, fileKind(st.Mode()))
	}
	b, err := readSafetensors(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	sf, err := safetensors.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	c, err := conformance.FromFile(sf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	c.Path = p
	return c, nil
}

// readSafetensors reads a safetensors file of size bytes from r, bounded by
// its header: see loadCase.
func readSafetensors(r io.Reader, size int64) ([]byte, error) {
	if size < 8 {
		return nil, fmt.Errorf("safetensors: file of %d bytes is shorter than the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return nil, fmt.Errorf("safetensors: reading the header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > safetensors.MaxHeaderSize || int64(n) > size-8 {
		return nil, fmt.Errorf("safetensors: header length %d exceeds the %d-byte limit or the %d bytes after the length field",
			n, safetensors.MaxHeaderSize, size-8)
	}
	header := make([]byte, n)
	if _, err := io.ReadFull(r, header); err != nil {
		return nil, fmt.Errorf("safetensors: reading the %d-byte header: %w", n, err)
	}
	data, err := promisedData(header)
	if err != nil {
		return nil, err
	}
	if want := 8 + int64(n); data > size-want || want+data != size {
		return nil, fmt.Errorf("safetensors: file is %d bytes, its header promises %d (8 + %d header + %d data)", size, want+data, n, data)
	}
	b := make([]byte, size)
	copy(b, lenBuf[:])
	copy(b[8:], header)
	if _, err := io.ReadFull(r, b[8+n:]); err != nil {
		return nil, fmt.Errorf("safetensors: reading %d bytes of tensor data: %w", len(b)-8-int(n), err)
	}
	return b, nil
}

// promisedData is the end of the last tensor's data_offsets in a
// safetensors header: the bytes of data the file must hold after it.
// Malformed entries are left to safetensors.Parse to report, except that
// offsets must be numbers.
func promisedData(header []byte) (int64, error) {
	var entries map[string]json.RawMessage
	if err := json.Unmarshal(header, &entries); err != nil {
		return 0, fmt.Errorf("safetensors: header JSON: %w", err)
	}
	var end int64
	for name, raw := range entries {
		if name == "__metadata__" || !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
			continue
		}
		var e struct {
			DataOffsets []int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return 0, fmt.Errorf("safetensors: tensor %q: %w", name, err)
		}
		for _, o := range e.DataOffsets {
			if o < 0 {
				return 0, fmt.Errorf("safetensors: tensor %q: negative data offset %d", name, o)
			}
			end = max(end, o)
		}
	}
	return end, nil
}

// printResults prints one row per result of the case file name; a case with
// PEFT's extensions shows them after the name ("name [features]"; in JSON
// the field "features").
func printResults(w io.Writer, asJSON bool, name, features string, res []conformance.Result) (failed int) {
	row := name
	if features != "" {
		row += " [" + features + "]"
	}
	for _, r := range res {
		verdict := "PASS"
		if !r.Pass {
			verdict = "FAIL"
			failed++
		}
		if asJSON {
			m := map[string]any{"case": name, "tensor": r.Key, "rel_err": jsonNum(r.Err), "tol": r.Tol, "pass": r.Pass}
			if features != "" {
				m["features"] = features
			}
			b, _ := json.Marshal(m)
			fmt.Fprintln(w, string(b))
			continue
		}
		fmt.Fprintf(w, "%-58s %-28s %10.3g %10.3g  %s\n", row, r.Key, r.Err, r.Tol, verdict)
	}
	return failed
}

// caseFeatures names the PEFT extensions of a case (docs/CONFORMANCE.md,
// "Extensions"), e.g. "dropout=0.2 mask=shared dora bias=trainable"; one
// that only some projections have lists them, as in "bias=frozen(q,v)".
// It is "" for a plain case.
func caseFeatures(c *conformance.Case) string {
	var order []string
	on := map[string][]string{} // feature → the projections that have it
	add := func(f, proj string) {
		if _, ok := on[f]; !ok {
			order = append(order, f)
		}
		on[f] = append(on[f], proj)
	}
	dropout := false
	for _, n := range c.Projections {
		x := c.Proj[n].Ext
		if x.Mask != nil {
			add("dropout="+strconv.FormatFloat(x.Dropout, 'g', -1, 64), n)
			dropout = true
		}
		if x.LoRABias != nil {
			add("lora_bias", n)
		}
		if x.Magnitude != nil {
			add("dora", n)
		}
		switch {
		case x.BiasTrainable:
			add("bias=trainable", n)
		case x.Bias != nil:
			add("bias=frozen", n)
		}
	}
	var fs []string
	for _, f := range order {
		if ps := on[f]; len(ps) < len(c.Projections) {
			f += "(" + strings.Join(ps, ",") + ")"
		}
		fs = append(fs, f)
		if dropout && strings.HasPrefix(f, "dropout=") && c.Metadata["dropout_mask"] == "shared" {
			dropout = false // once, after the first dropout item
			fs = append(fs, "mask=shared")
		}
	}
	return strings.Join(fs, " ")
}

func sortedKeys(m map[string]float64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
