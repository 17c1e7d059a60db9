package hf

import (
	"fmt"
	"slices"

	"github.com/vklora/vklora/safetensors"
)

// Tensor-name suffixes of a bitsandbytes NF4 Linear after its prefix: the
// tensors quant.LoadNF4 reads (the nested ones only with double
// quantization).
var nf4Suffixes = []string{
	".weight", ".weight.absmax", ".weight.quant_map", ".weight.nested_absmax",
	".weight.nested_quant_map", ".weight.quant_state.bitsandbytes__nf4",
}

// projPlan is what loading one projection reads, found from the headers.
type projPlan struct {
	layer   int
	module  Module
	prefix  string
	out, in int
	nf4     []string // the quantized weight's tensors; nil for a dense weight
	bias    string   // the bias tensor, "" for none
}

func (p projPlan) weight() string { return p.prefix + ".weight" }

// checkLayers plans every layer, so that Open refuses a checkpoint whose
// layers do not match its config, and refuses tensors of layers beyond
// num_hidden_layers (a config from another model size).
func (c *Checkpoint) checkLayers() error {
	for _, n := range c.Names() {
		if i, ok := layerOf(n); ok && i >= c.cfg.NumHiddenLayers {
			return fmt.Errorf("hf: %s: tensor %q belongs to layer %d, but %s has num_hidden_layers = %d: %w",
				c.path(n), n, i, ConfigFile, c.cfg.NumHiddenLayers, ErrBadCheckpoint)
		}
	}
	for i := 0; i < c.cfg.NumHiddenLayers; i++ {
		if _, err := c.plan(i); err != nil {
			return err
		}
	}
	return nil
}

// path is the file holding tensor n, for errors.
func (c *Checkpoint) path(n string) string {
	if r, ok := c.reader(n); ok {
		return r.Name()
	}
	return c.dir
}

// plan checks layer i's seven projections against the config from the
// headers alone.
func (c *Checkpoint) plan(i int) ([]projPlan, error) {
	plans := make([]projPlan, 0, len(Modules))
	for _, m := range Modules {
		p, err := c.planProj(i, m)
		if err != nil {
			return nil, err
		}
		plans = append(plans, p)
	}
	return plans, nil
}

func (c *Checkpoint) planProj(i int, m Module) (projPlan, error) {
	p := projPlan{layer: i, module: m, prefix: Prefix(i, m)}
	p.out, p.in = c.cfg.Shape(m)
	w := p.weight()
	info, path, ok := c.Info(w)
	if !ok {
		return p, c.missingWeight(p)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("hf: %s: tensor %q (layer %d %s): %s: %w", path, w, i, m, fmt.Sprintf(format, args...), ErrBadCheckpoint)
	}
	if fp4 := p.prefix + ".weight.quant_state.bitsandbytes__fp4"; c.has(fp4) {
		return p, fmt.Errorf("hf: %s: tensor %q: bitsandbytes FP4 is not supported, only NF4: %w", c.path(fp4), fp4, ErrUnsupported)
	}
	if c.has(p.prefix + ".weight.quant_state.bitsandbytes__nf4") {
		// bitsandbytes packs two codes per byte, as [(n+1)/2, 1] U8.
		if want := (p.out*p.in + 1) / 2; info.DType != "U8" || info.NumElements() != want {
			return p, bad("%s%v is not the %d packed 4-bit codes of a [%d %d] weight", info.DType, info.Shape, want, p.out, p.in)
		}
		for _, s := range []string{".weight.absmax", ".weight.quant_map"} {
			if !c.has(p.prefix + s) {
				return p, fmt.Errorf("hf: %s: no tensor %q: an NF4 weight needs its scales and code map: %w", c.dir, p.prefix+s, ErrBadCheckpoint)
			}
		}
		for _, s := range nf4Suffixes {
			if c.has(p.prefix + s) {
				p.nf4 = append(p.nf4, p.prefix+s)
			}
		}
	} else {
		switch d, err := safetensors.ToDType(info.DType); {
		case info.DType == "I8" || c.has(p.prefix+".weight.SCB"):
			return p, fmt.Errorf("hf: %s: tensor %q (layer %d %s): 8-bit bitsandbytes (LLM.int8) weights are not supported: %w", path, w, i, m, ErrUnsupported)
		case info.DType == "U8":
			return p, bad("U8 weight without a bitsandbytes quant_state (%s.weight.quant_state.bitsandbytes__nf4)", p.prefix)
		case err != nil || !d.IsFloat():
			return p, fmt.Errorf("hf: %s: tensor %q (layer %d %s): dtype %s is not F32, F16 or BF16: %w", path, w, i, m, info.DType, ErrUnsupported)
		case !slices.Equal(info.Shape, []int{p.out, p.in}):
			return p, bad("shape %v, want [%d %d] from %s", info.Shape, p.out, p.in, c.shapeWhy(m))
		}
	}
	return p, c.planBias(&p)
}

// shapeWhy says where a projection's expected shape comes from.
func (c *Checkpoint) shapeWhy(m Module) string {
	cf := &c.cfg
	switch m {
	case Q, O:
		return fmt.Sprintf("num_attention_heads %d × head_dim %d and hidden_size %d", cf.NumAttentionHeads, cf.HeadDim, cf.HiddenSize)
	case K, V:
		return fmt.Sprintf("num_key_value_heads %d × head_dim %d and hidden_size %d", cf.NumKeyValueHeads, cf.HeadDim, cf.HiddenSize)
	}
	return fmt.Sprintf("intermediate_size %d and hidden_size %d", cf.IntermediateSize, cf.HiddenSize)
}

// missingWeight words the error for an absent weight, naming the formats
// that store a Linear under other keys.
func (c *Checkpoint) missingWeight(p projPlan) error {
	w := p.weight()
	if c.has(p.prefix + ".qweight") {
		return fmt.Errorf("hf: %s: no tensor %q but %s.qweight: GPTQ/AWQ weights are not supported: %w", c.dir, w, p.prefix, ErrUnsupported)
	}
	return fmt.Errorf("hf: %s: no tensor %q (layer %d %s, [%d %d]) in %s: %w", c.dir, w, p.layer, p.module, p.out, p.in, c.filesDesc(), ErrBadCheckpoint)
}

func (c *Checkpoint) filesDesc() string {
	if len(c.files) == 1 {
		return c.files[0]
	}
	return fmt.Sprintf("%d shards of %s", len(c.files), IndexFile)
}

// planBias checks the bias against the config: present exactly when the
// architecture has one, 1-D [out] and float.
func (c *Checkpoint) planBias(p *projPlan) error {
	b := p.prefix + ".bias"
	info, path, ok := c.Info(b)
	want := c.cfg.HasBias(p.module)
	switch {
	case !ok && want:
		return fmt.Errorf("hf: %s: no tensor %q: %s has a bias on %s (%s): %w", c.dir, b, c.cfg.ModelType, p.module, c.biasWhy(), ErrBadCheckpoint)
	case ok && !want:
		return fmt.Errorf("hf: %s: tensor %q: %s has no bias on %s under %s (%s), so it would be ignored: %w", path, b, c.cfg.ModelType, p.module, ConfigFile, c.biasWhy(), ErrBadCheckpoint)
	case !ok:
		return nil
	}
	if d, err := safetensors.ToDType(info.DType); err != nil || !d.IsFloat() {
		return fmt.Errorf("hf: %s: tensor %q: dtype %s is not F32, F16 or BF16: %w", path, b, info.DType, ErrUnsupported)
	}
	if !slices.Equal(info.Shape, []int{p.out}) {
		return fmt.Errorf("hf: %s: tensor %q: shape %v, want [%d]: %w", path, b, info.Shape, p.out, ErrBadCheckpoint)
	}
	p.bias = b
	return nil
}

func (c *Checkpoint) biasWhy() string {
	switch c.cfg.ModelType {
	case "qwen2":
		return "qwen2 always has q, k and v biases and no others"
	case "mistral":
		return "mistral has no biases"
	case "llama":
		return fmt.Sprintf("attention_bias %v, mlp_bias %v", c.cfg.QKVBias, c.cfg.MLPBias)
	}
	return fmt.Sprintf("attention_bias %v", c.cfg.QKVBias)
}
