package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/internal/fsutil"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/safetensors"
	"github.com/vklora/vklora/vk"
)

// DefaultMaxShardBytes is the shard size WriteMerged uses when none is
// given: transformers' save_pretrained default, "5GB" (decimal).
const DefaultMaxShardBytes = 5_000_000_000

// MergeOptions are WriteMerged's settings; the zero value is the defaults.
type MergeOptions struct {
	// DType is the dtype of the merge on the device and of every float
	// tensor written (f32, f16 or bf16); 0 is the checkpoint's DType. The
	// adapters must be on the device in it, and NF4 weights must
	// dequantize to it.
	DType dtype.DType
	// MaxShardBytes bounds the tensor bytes of one file: a checkpoint that
	// fits is one model.safetensors, a larger one shards with
	// model.safetensors.index.json. 0 is DefaultMaxShardBytes; a tensor
	// larger than the bound gets a shard of its own, as in transformers.
	MaxShardBytes int64
	// Replace gives new values for tensors outside the adapted projections,
	// by checkpoint name: the biases PEFT's bias="all" trained on modules
	// without an adapter (peft.Adapter.OtherBiases, keyed there by module
	// path: the name here is path + ".bias"). Each must be a float tensor
	// of the checkpoint with as many values; they are rounded to DType.
	Replace map[string][]float32
}

// torchNames are the config.json torch_dtype values of the float dtypes.
var torchNames = map[dtype.DType]string{dtype.F32: "float32", dtype.F16: "float16", dtype.BF16: "bfloat16"}

// outKind is how WriteMerged produces one output tensor.
type outKind uint8

const (
	outCopy   outKind = iota // the checkpoint's tensor, float ones converted to the dtype
	outWeight                // a projection's merged weight, from the device
	outBias                  // a projection's merged bias, from the device
)

// outTensor is one tensor of the merged checkpoint.
type outTensor struct {
	safetensors.Entry
	kind outKind
	proj *projPlan // outWeight, outBias
	file string    // the shard it goes to
}

// mergePlan is everything WriteMerged decides before it writes a byte.
type mergePlan struct {
	d        dtype.DType
	outs     []outTensor                    // in name order
	byName   map[string]*outTensor          // into outs
	adapters map[string]*lora.LoRALinear    // by projection prefix; projections without one are absent
	projs    []*projPlan                    // those merged on the device, in layer order
	files    []string                       // shard file names, in order
	entries  map[string][]safetensors.Entry // by file
	replace  map[string][]float32           // MergeOptions.Replace
}

// bytes is the size of an output tensor.
func (o *outTensor) bytes() int64 {
	es, _ := safetensors.DTypeSize(o.DType)
	return int64(es) * int64((safetensors.Tensor{Shape: o.Shape}).NumElements())
}

// WriteMerged writes to dir, a directory that must not exist yet, a dense
// Hugging Face checkpoint of c with the adapters ad gives merged into the
// projections, as PEFT's merge_and_unload followed by save_pretrained
// would: every projection's weight becomes lora.Engine.MergedWeight's (W +
// s·B·A, or DoRA's c ⊙ (W + s·B·A), a bitsandbytes NF4 weight dequantized
// first), its bias b + s·b_B (or the adapter's trained bias), and every
// other tensor (embeddings, norms, lm_head, projections without adapter)
// is copied, float tensors converted to opt.DType. Names are the
// checkpoint's; NF4's extra tensors (absmax, quant_map, quant_state, …)
// are dropped. config.json is copied without quantization_config and with
// torch_dtype (or dtype, whichever it has) set to opt.DType, so that
// transformers loads the result as a plain model; the other top-level
// files that are not weights (tokenizer, generation config, license) are
// copied as they are.
//
// Everything is written into a temporary directory beside dir that takes
// dir's name only when complete, so a failure leaves nothing half-written.
// Host memory holds one tensor at a time (a merged weight as downloaded,
// or a few MiB of a copied one), and the device one projection's base,
// merged copy and temporaries. Errors name the tensor and wrap
// lora.ErrBadInput (arguments, adapters that do not fit), ErrBadCheckpoint
// or ErrUnsupported.
func (c *Checkpoint) WriteMerged(dir string, e *lora.Engine, ad Adapters, opt MergeOptions) (err error) {
	if err := c.alive(); err != nil {
		return err
	}
	if e == nil {
		return fmt.Errorf("hf: WriteMerged: engine is nil: %w", lora.ErrBadInput)
	}
	pl, err := c.mergePlan(e.Device(), ad, opt)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(dir); err == nil || !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("hf: WriteMerged: %s exists (or cannot be checked: %v); the merged checkpoint goes to a new directory: %w", dir, err, lora.ErrBadInput)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("hf: WriteMerged: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp's 0700; a checkpoint is shared like any directory
		return fmt.Errorf("hf: WriteMerged: %w", err)
	}
	if err := c.writeSideFiles(tmp, pl.d); err != nil {
		return err
	}
	if err := c.writeMergedWeights(tmp, e, pl); err != nil {
		return err
	}
	if err := pl.writeIndex(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("hf: WriteMerged: %w", err)
	}
	return nil
}

// mergePlan checks the arguments and the adapters against the checkpoint
// and lays out the output tensors and shards.
func (c *Checkpoint) mergePlan(dev *vk.Device, ad Adapters, opt MergeOptions) (*mergePlan, error) {
	d := opt.DType
	if d == 0 {
		d = c.DType()
	}
	if err := checkDevice("WriteMerged", dev, d); err != nil {
		return nil, err
	}
	if opt.MaxShardBytes < 0 {
		return nil, fmt.Errorf("hf: WriteMerged: MaxShardBytes %d is negative: %w", opt.MaxShardBytes, lora.ErrBadInput)
	}
	pl := &mergePlan{d: d, byName: map[string]*outTensor{}, adapters: map[string]*lora.LoRALinear{},
		entries: map[string][]safetensors.Entry{}, replace: opt.Replace}
	claimed := map[string]*projPlan{} // the projections' tensors, by name
	for i := 0; i < c.cfg.NumHiddenLayers; i++ {
		plans, err := c.plan(i)
		if err != nil {
			return nil, err
		}
		for k := range plans {
			p := &plans[k]
			if err := pl.addAdapter(c, p, ad); err != nil {
				return nil, err
			}
			for _, n := range append(append([]string{p.weight()}, p.nf4...), p.bias) {
				if n != "" {
					claimed[n] = p
				}
			}
		}
	}
	if err := pl.layout(c, claimed); err != nil {
		return nil, err
	}
	if err := pl.checkReplace(c); err != nil {
		return nil, err
	}
	pl.shard(opt.MaxShardBytes)
	return pl, nil
}

// addAdapter asks ad for p's adapter and checks what the checkpoint alone
// can tell; it records p for the device when it has an adapter or is NF4.
func (pl *mergePlan) addAdapter(c *Checkpoint, p *projPlan, ad Adapters) error {
	var a *lora.LoRALinear
	if ad != nil {
		var err error
		if a, err = ad(p.layer, p.module); err != nil {
			return fmt.Errorf("hf: WriteMerged: layer %d %s: adapter: %w", p.layer, p.module, err)
		}
	}
	if a != nil {
		what := ""
		switch {
		case a.Base.Dense != nil || a.Base.NF4 != nil:
			what = "carries a base weight of its own; leave Base zero"
		case a.Merged:
			what = "is marked merged, but the checkpoint's weight is the unmerged base"
		case (a.Bias != nil || a.LoRABias != nil) && p.bias == "":
			what = fmt.Sprintf("gives a bias, but the checkpoint has no %s.bias for it (%s has none there)", p.prefix, c.cfg.ModelType)
		}
		if what != "" {
			return fmt.Errorf("hf: WriteMerged: layer %d %s: the adapter %s: %w", p.layer, p.module, what, lora.ErrBadInput)
		}
		pl.adapters[p.prefix] = a
	}
	if a != nil || p.nf4 != nil {
		pl.projs = append(pl.projs, p)
	}
	return nil
}

// layout lists the output tensors: every checkpoint tensor but NF4's extra
// ones, the projections merged on the device typed as the dtype.
func (pl *mergePlan) layout(c *Checkpoint, claimed map[string]*projPlan) error {
	st, _ := safetensors.FromDType(pl.d)
	device := map[*projPlan]bool{}
	for _, p := range pl.projs {
		device[p] = true
	}
	for _, n := range c.Names() {
		info, path, _ := c.Info(n)
		p := claimed[n]
		if p == nil && strings.Contains(n, ".quant_state.") {
			return fmt.Errorf("hf: WriteMerged: %s: tensor %q is a quantized weight's state outside the decoder projections, which the merge cannot dequantize: %w", path, n, ErrUnsupported)
		}
		o := outTensor{Entry: safetensors.Entry{Name: n, DType: info.DType, Shape: slices.Clone(info.Shape)}, proj: p}
		switch {
		case p != nil && n == p.weight() && device[p]:
			o.kind, o.DType, o.Shape = outWeight, st, []int{p.out, p.in}
		case p != nil && n == p.bias && device[p]:
			o.kind, o.DType = outBias, st
		case p != nil && n != p.weight() && n != p.bias:
			continue // NF4's absmax, quant_map, nested scales and quant_state
		default:
			if d, err := safetensors.ToDType(info.DType); err == nil && d.IsFloat() {
				o.DType = st
			}
		}
		pl.outs = append(pl.outs, o)
	}
	for i := range pl.outs {
		pl.byName[pl.outs[i].Name] = &pl.outs[i]
	}
	return nil
}

// checkReplace validates MergeOptions.Replace against the layout.
func (pl *mergePlan) checkReplace(c *Checkpoint) error {
	for _, n := range slices.Sorted(maps.Keys(pl.replace)) {
		o, ok := pl.byName[n]
		info, _, _ := c.Info(n)
		d, derr := safetensors.ToDType(info.DType)
		switch {
		case !ok:
			return fmt.Errorf("hf: WriteMerged: Replace[%q]: the checkpoint has no such tensor: %w", n, lora.ErrBadInput)
		case o.kind != outCopy:
			return fmt.Errorf("hf: WriteMerged: Replace[%q]: the tensor belongs to a projection merged on the device, whose adapter gives it: %w", n, lora.ErrBadInput)
		case o.proj != nil && n == o.proj.weight():
			return fmt.Errorf("hf: WriteMerged: Replace[%q]: projection weights are not replaced; give the layer an adapter: %w", n, lora.ErrBadInput)
		case derr != nil || !d.IsFloat():
			return fmt.Errorf("hf: WriteMerged: Replace[%q]: the tensor is %s, not a float tensor: %w", n, info.DType, lora.ErrBadInput)
		case len(pl.replace[n]) != info.NumElements():
			return fmt.Errorf("hf: WriteMerged: Replace[%q]: %d values for a tensor of shape %v: %w", n, len(pl.replace[n]), info.Shape, lora.ErrBadInput)
		}
	}
	return nil
}

// shard assigns the tensors, in name order, to files of at most max bytes.
func (pl *mergePlan) shard(max int64) {
	if max == 0 {
		max = DefaultMaxShardBytes
	}
	var sizes []int64
	shardOf := make([]int, len(pl.outs))
	for i := range pl.outs {
		n := pl.outs[i].bytes()
		if k := len(sizes) - 1; k < 0 || (sizes[k] > 0 && sizes[k]+n > max) {
			sizes = append(sizes, 0)
		}
		sizes[len(sizes)-1] += n
		shardOf[i] = len(sizes) - 1
	}
	for k := range sizes {
		name := SingleFile
		if len(sizes) > 1 {
			name = fmt.Sprintf("model-%05d-of-%05d.safetensors", k+1, len(sizes))
		}
		pl.files = append(pl.files, name)
	}
	for i := range pl.outs {
		o := &pl.outs[i]
		o.file = pl.files[shardOf[i]]
		pl.entries[o.file] = append(pl.entries[o.file], o.Entry)
	}
}

// writeIndex writes model.safetensors.index.json for a sharded result.
func (pl *mergePlan) writeIndex(dir string) error {
	if len(pl.files) < 2 {
		return nil
	}
	wm := map[string]string{}
	var total int64
	for i := range pl.outs {
		wm[pl.outs[i].Name] = pl.outs[i].file
		total += pl.outs[i].bytes()
	}
	b, err := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": wm}, "", "  ")
	if err != nil {
		return fmt.Errorf("hf: WriteMerged: index: %w", err)
	}
	return writeNew(filepath.Join(dir, IndexFile), append(b, '\n'))
}

// writeMergedWeights writes every shard: the projections merged on the
// device first, then the copied tensors.
func (c *Checkpoint) writeMergedWeights(dir string, e *lora.Engine, pl *mergePlan) (err error) {
	ws := map[string]*safetensors.Writer{}
	defer func() {
		for _, w := range ws {
			w.Abort() // after Close, harmless
		}
	}()
	for _, f := range pl.files {
		w, err := safetensors.Create(filepath.Join(dir, f), map[string]string{"format": "pt"}, pl.entries[f])
		if err != nil {
			return fmt.Errorf("hf: WriteMerged: %w", err)
		}
		ws[f] = w
	}
	for _, p := range pl.projs {
		if err := c.writeMergedProj(e, pl, p, ws); err != nil {
			return err
		}
	}
	for _, o := range pl.outs {
		if o.kind == outCopy {
			if err := c.copyTensor(ws[o.file], o, pl); err != nil {
				return err
			}
		}
	}
	for _, f := range pl.files {
		if err := ws[f].Close(); err != nil {
			return fmt.Errorf("hf: WriteMerged: %w", err)
		}
	}
	return nil
}

// writeMergedProj loads projection p, merges its adapter on the device
// (lora.Engine.MergedWeight) and writes the merged weight and bias.
func (c *Checkpoint) writeMergedProj(e *lora.Engine, pl *mergePlan, p *projPlan, ws map[string]*safetensors.Writer) error {
	dev := e.Device()
	lw := &LayerWeights{Index: p.layer, DType: pl.d, HiddenAct: c.cfg.HiddenAct}
	defer lw.Release()
	if err := c.loadProj(dev, *p, pl.d, lw.Linear(p.module)); err != nil {
		return err
	}
	a := pl.adapters[p.prefix]
	l, err := lw.linear(p.module, func(int, Module) (*lora.LoRALinear, error) { return a, nil })
	if err != nil {
		return err
	}
	rec, err := dev.NewRecorder()
	if err != nil {
		return fmt.Errorf("hf: WriteMerged: %w", err)
	}
	defer rec.Release()
	w, b, err := e.MergedWeight(rec, l)
	if err != nil {
		return fmt.Errorf("hf: WriteMerged: layer %d %s: %w", p.layer, p.module, err)
	}
	defer w.Release()
	defer b.Release()
	if err := rec.Submit(); err != nil {
		return fmt.Errorf("hf: WriteMerged: layer %d %s: %w", p.layer, p.module, err)
	}
	for _, x := range []struct {
		name string
		t    *vk.Tensor
	}{{p.weight(), w}, {p.bias, b}} {
		if x.t == nil {
			continue
		}
		raw, err := x.t.RawBytes()
		if err == nil {
			err = ws[pl.byName[x.name].file].Write(x.name, raw)
		}
		if err != nil {
			return fmt.Errorf("hf: WriteMerged: tensor %q: %w", x.name, err)
		}
	}
	return nil
}

// copyTensor streams one checkpoint tensor into w, converting a float one
// to the output dtype (or writing its Replace values instead), a few MiB
// at a time.
func (c *Checkpoint) copyTensor(w *safetensors.Writer, o outTensor, pl *mergePlan) error {
	fail := func(err error) error { return fmt.Errorf("hf: WriteMerged: tensor %q: %w", o.Name, err) }
	if vals, ok := pl.replace[o.Name]; ok {
		return w.Write(o.Name, dtype.Encode(pl.d, vals))
	}
	info, _, _ := c.Info(o.Name)
	r, _ := c.reader(o.Name)
	sec, err := r.Section(o.Name)
	if err != nil {
		return fail(err)
	}
	src, err := safetensors.ToDType(info.DType)
	convert := err == nil && src.IsFloat() && src != pl.d
	elem := 1
	if convert {
		elem = src.Size()
	}
	buf := make([]byte, min(int64(max(uploadChunk/elem, 1)*elem), sec.Size()))
	var xs []float32
	for off := int64(0); off < sec.Size(); {
		n := int(min(int64(len(buf)), sec.Size()-off))
		if got, err := sec.ReadAt(buf[:n], off); got != n {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fail(fmt.Errorf("read %d of %d bytes at %d: %w", got, n, off, err))
		}
		out := buf[:n]
		if convert {
			xs = slices.Grow(xs[:0], n/src.Size())[:n/src.Size()]
			dtype.Decode(src, out, xs)
			out = dtype.Encode(pl.d, xs)
		}
		if err := w.Write(o.Name, out); err != nil {
			return fail(err)
		}
		off += int64(n)
	}
	return nil
}

// writeSideFiles writes the merged config.json and copies the directory's
// other top-level files that are not weights.
func (c *Checkpoint) writeSideFiles(dir string, d dtype.DType) error {
	b, err := readSmallFile(filepath.Join(c.dir, ConfigFile), maxConfigBytes)
	if err != nil {
		return fmt.Errorf("hf: WriteMerged: %w", err)
	}
	cfg, err := mergedConfig(b, d)
	if err != nil {
		return fmt.Errorf("hf: WriteMerged: %s: %w", filepath.Join(c.dir, ConfigFile), err)
	}
	if err := writeNew(filepath.Join(dir, ConfigFile), cfg); err != nil {
		return err
	}
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("hf: WriteMerged: %w", err)
	}
	for _, ent := range ents {
		n := ent.Name()
		if n == ConfigFile || isWeightFile(n) || strings.HasPrefix(n, ".") {
			continue
		}
		if st, err := os.Stat(filepath.Join(c.dir, n)); err != nil || !st.Mode().IsRegular() {
			continue // directories, FIFOs, dangling links
		}
		if err := copyFile(filepath.Join(dir, n), filepath.Join(c.dir, n)); err != nil {
			return fmt.Errorf("hf: WriteMerged: %w", err)
		}
	}
	return nil
}

// isWeightFile reports the names of weight files, in any format, which
// WriteMerged replaces or leaves behind rather than copying.
func isWeightFile(n string) bool {
	for _, s := range []string{".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx"} {
		if strings.HasSuffix(n, s) {
			return true
		}
	}
	return false
}

// mergedConfig is config.json without quantization_config and with the
// dtype set to d (torch_dtype, and dtype where the file uses that name),
// keys sorted and indented as transformers writes them.
func mergedConfig(b []byte, d dtype.DType) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrBadCheckpoint)
	}
	delete(m, "quantization_config")
	name, _ := json.Marshal(torchNames[d])
	set := false
	for _, k := range []string{"torch_dtype", "dtype"} {
		if _, ok := m[k]; ok {
			m[k], set = name, true
		}
	}
	if !set {
		m["torch_dtype"] = name
	}
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// writeNew writes a new file.
func writeNew(path string, b []byte) error {
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("hf: WriteMerged: %w", err)
	}
	return nil
}

// copyFile copies the regular file src to a new file dst.
func copyFile(dst, src string) error {
	in, _, err := fsutil.OpenRegular(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
