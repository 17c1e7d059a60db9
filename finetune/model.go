package finetune

import (
	"errors"
	"fmt"
	"slices"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/hf"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/peft"
)

// Options say which layers to load, in which dtype, and with which adapter:
// exactly one of Adapter, AdapterDir and Config.
type Options struct {
	// Layers are the decoder layers to load, in this order; nil loads every
	// layer of the checkpoint.
	Layers []int
	// DType is the layers' dtype (f32, f16 or bf16); 0 is the checkpoint's
	// (hf.Checkpoint.DType).
	DType dtype.DType
	// Adapter continues training a PEFT adapter already in memory; its
	// modules outside Layers are kept as they are and saved unchanged.
	Adapter *peft.Adapter
	// AdapterDir continues training the adapter saved in this directory
	// (peft.Load): PeftModel.from_pretrained(model, dir, is_trainable=True).
	AdapterDir string
	// Config starts a fresh adapter (NewAdapter with Seed):
	// get_peft_model(model, config).
	Config *peft.Config
	// Seed draws a fresh adapter's lora_A and every projection's dropout
	// masks, so that a run is reproducible.
	Seed uint64
}

// Layer is one decoder layer on the device: its frozen base weights and the
// engine's layers over them with the adapter's tensors. QKV takes the
// attention input, O the attention output (heads·head_dim wide) and MLP the
// MLP input; each has Forward and Backward (package lora).
type Layer struct {
	Index   int
	Weights *hf.LayerWeights
	QKV     *lora.QKV
	O       *lora.O
	MLP     *lora.MLP
}

// Projections lists the layer's seven projections in hf.Modules order (q,
// k, v, o, gate, up, down), as its layers hold them: to switch dropout to
// evaluation (Projection.Dropout.Eval) or read a scale.
func (l *Layer) Projections() []*lora.Projection {
	return []*lora.Projection{l.QKV.Q, l.QKV.K, l.QKV.V, l.O.Proj, l.MLP.Gate, l.MLP.Up, l.MLP.Down}
}

// Model is a checkpoint's decoder layers with a LoRA adapter attached.
type Model struct {
	Config hf.Config
	DType  dtype.DType
	Layers []*Layer
	// Adapter is the host adapter the model started from (config, module
	// paths, ranks, stored dtypes); its tensors are the starting values, not
	// the trained ones (Trained downloads those).
	Adapter *peft.Adapter
	// Modules are the adapter's tensors on the device, by module path: the
	// parameters the optimizer updates.
	Modules peft.DeviceModules
}

// Open is Load of the checkpoint in dir, which it closes again: every
// tensor Load needs is on the device when it returns.
func Open(eng *lora.Engine, dir string, o Options) (*Model, error) {
	ck, err := hf.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("finetune: %w", err)
	}
	defer ck.Close()
	return Load(eng, ck, o)
}

// Load uploads the chosen decoder layers of ck in the chosen dtype with the
// adapter Options names (loaded, or fresh from NewAdapter) and builds the
// engine's layers over them. The adapter is checked against the checkpoint
// before anything is uploaded. The caller releases the Model.
func Load(eng *lora.Engine, ck *hf.Checkpoint, o Options) (*Model, error) {
	m, err := load(eng, ck, o)
	if err != nil {
		return nil, fmt.Errorf("finetune: Load: %w", err)
	}
	return m, nil
}

func load(eng *lora.Engine, ck *hf.Checkpoint, o Options) (*Model, error) {
	if eng == nil || ck == nil {
		return nil, fmt.Errorf("engine or checkpoint is nil: %w", lora.ErrBadInput)
	}
	cfg := ck.Config()
	layers, err := layerList(o.Layers, cfg.NumHiddenLayers)
	if err != nil {
		return nil, err
	}
	d := o.DType
	if d == 0 {
		d = ck.DType()
	}
	if !d.IsFloat() {
		return nil, fmt.Errorf("dtype %v is not f32, f16 or bf16: %w", d, lora.ErrBadInput)
	}
	a, err := chooseAdapter(o, &cfg, layers, d)
	if err != nil {
		return nil, err
	}
	if err := checkAdapter(a, &cfg); err != nil {
		return nil, err
	}
	m := &Model{Config: cfg, DType: d, Adapter: a, Modules: peft.DeviceModules{}}
	for _, i := range layers {
		l, err := m.loadLayer(eng, ck, i, o.Seed)
		if err != nil {
			m.Release()
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		m.Layers = append(m.Layers, l)
	}
	return m, nil
}

// layerList checks the requested layer indices, or lists them all.
func layerList(req []int, n int) ([]int, error) {
	if req == nil {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
	if len(req) == 0 {
		return nil, fmt.Errorf("Layers is empty (nil loads every layer): %w", lora.ErrBadInput)
	}
	for k, i := range req {
		if i < 0 || i >= n {
			return nil, fmt.Errorf("layer %d is not in [0, %d) (num_hidden_layers): %w", i, n, lora.ErrBadInput)
		}
		if slices.Contains(req[:k], i) {
			return nil, fmt.Errorf("layer %d is listed twice: %w", i, lora.ErrBadInput)
		}
	}
	return slices.Clone(req), nil
}

// chooseAdapter returns the adapter Options names, loading or making it.
func chooseAdapter(o Options, cfg *hf.Config, layers []int, d dtype.DType) (*peft.Adapter, error) {
	set := 0
	for _, b := range []bool{o.Adapter != nil, o.AdapterDir != "", o.Config != nil} {
		if b {
			set++
		}
	}
	if set != 1 {
		return nil, fmt.Errorf("set exactly one of Adapter, AdapterDir and Config (%d set): %w", set, lora.ErrBadInput)
	}
	switch {
	case o.Adapter != nil:
		if err := o.Adapter.Validate(); err != nil {
			return nil, fmt.Errorf("adapter: %w", err)
		}
		return o.Adapter, nil
	case o.AdapterDir != "":
		return peft.Load(o.AdapterDir)
	}
	return NewAdapter(*o.Config, cfg, layers, d, o.Seed)
}

// checkAdapter refuses what the Model cannot train and modules that do not
// fit the checkpoint, naming the module.
func checkAdapter(a *peft.Adapter, cfg *hf.Config) error {
	c := &a.Config
	switch {
	case c.Bias != peft.BiasNone:
		return fmt.Errorf("adapter bias %q: training base biases is not supported (use \"none\"): %w", c.Bias, lora.ErrNotImplemented)
	case c.FanInFanOut:
		return fmt.Errorf("adapter fan_in_fan_out: the checkpoint's projections are nn.Linear, stored [out, in]: %w", lora.ErrNotImplemented)
	}
	known := projectionPaths(cfg)
	for _, p := range a.Paths() {
		mod := a.Modules[p]
		pm, ok := known[p]
		if !ok {
			return fmt.Errorf("adapter module %s is not a decoder-layer projection of this checkpoint (%d layers): %w", p, cfg.NumHiddenLayers, lora.ErrBadInput)
		}
		out, in := cfg.Shape(pm)
		if mod.In() != in || mod.Out() != out {
			return fmt.Errorf("adapter module %s: lora_A %v and lora_B %v do not fit the base weight [out=%d, in=%d]: %w",
				p, mod.A.Shape, mod.B.Shape, out, in, lora.ErrBadInput)
		}
	}
	return nil
}

// projectionPaths maps every decoder-layer projection path of cfg to its
// module.
func projectionPaths(cfg *hf.Config) map[string]hf.Module {
	known := make(map[string]hf.Module, cfg.NumHiddenLayers*len(hf.Modules))
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		for _, pm := range hf.Modules {
			known[hf.Prefix(i, pm)] = pm
		}
	}
	return known
}

// loadLayer uploads layer i and the adapter's modules of it, and builds the
// layers. On error what it allocated is released (the modules stay in
// m.Modules for m.Release).
func (m *Model) loadLayer(eng *lora.Engine, ck *hf.Checkpoint, i int, seed uint64) (*Layer, error) {
	for _, pm := range hf.Modules {
		p := hf.Prefix(i, pm)
		mod := m.Adapter.Modules[p]
		if mod == nil {
			continue
		}
		dm, err := mod.Upload(eng.Device(), m.DType)
		if err != nil {
			return nil, err
		}
		m.Modules[p] = dm
	}
	lw, err := ck.Layer(i, eng.Device(), m.DType)
	if err != nil {
		return nil, err
	}
	l, err := buildLayer(eng, lw, m.Modules, seed)
	if err != nil {
		lw.Release()
		return nil, err
	}
	return l, nil
}

// buildLayer makes the engine's layers over lw with the adapter's modules.
func buildLayer(eng *lora.Engine, lw *hf.LayerWeights, ms peft.DeviceModules, seed uint64) (*Layer, error) {
	attn, mlp, err := lw.Modules(func(i int, pm hf.Module) (*lora.LoRALinear, error) {
		return ms.Adapter(hf.Prefix(i, pm))
	})
	if err != nil {
		return nil, err
	}
	qkv, err := lora.ApplyLoRAQKV(eng, attn)
	if err != nil {
		return nil, err
	}
	o, err := lora.ApplyLoRAO(eng, attn)
	if err != nil {
		return nil, err
	}
	gm, err := lora.ApplyLoRAMLP(eng, mlp)
	if err != nil {
		return nil, err
	}
	l := &Layer{Index: lw.Index, Weights: lw, QKV: qkv, O: o, MLP: gm}
	// GetLoRAParameters seeds each dropout from a process-wide sequence;
	// a seed per (run, layer, projection) makes the masks reproducible.
	for k, p := range l.Projections() {
		if p.Dropout != nil {
			p.Dropout.Seed = mix(seed, uint64(lw.Index), uint64(k))
		}
	}
	return l, nil
}

// mix is splitmix64 over its arguments: distinct, well-spread seeds.
func mix(xs ...uint64) uint64 {
	h := uint64(0x9e3779b97f4a7c15)
	for _, x := range xs {
		h ^= x + 0x9e3779b97f4a7c15 + h<<6 + h>>2
		h = (h ^ h>>30) * 0xbf58476d1ce4e5b9
		h = (h ^ h>>27) * 0x94d049bb133111eb
		h ^= h >> 31
	}
	return h
}

// Release frees the base weights and the adapter's device tensors; safe to
// call twice and on nil. The layers built over them are unusable after it.
func (m *Model) Release() {
	if m == nil {
		return
	}
	for _, l := range m.Layers {
		l.Weights.Release()
	}
	m.Modules.Release()
	m.Layers, m.Modules = nil, nil
}

// errNoLayers is returned by the methods of a released Model.
var errNoLayers = errors.New("model is nil or released")
