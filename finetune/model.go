package finetune

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/hf"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/peft"
	"github.com/vklora/vklora/vk"
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
	// Config starts a fresh adapter (NewAdapter with Seed; with use_dora,
	// the magnitudes from the base weights): get_peft_model(model, config).
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
	// the trained ones (Trained downloads those), including what Load filled
	// in: the checkpoint's biases where the config trains biases the adapter
	// does not carry, and a fresh DoRA adapter's magnitudes. It is a copy
	// with maps of its own: Options.Adapter is never changed.
	Adapter *peft.Adapter
	// Modules are the adapter's tensors on the device, by module path: the
	// parameters the optimizer updates, with OtherBiases.
	Modules peft.DeviceModules
	// OtherBiases are, with bias "all", the trained base biases of the loaded
	// projections that have no adapter, on the device in the layer dtype, by
	// module path (peft.Adapter.OtherBiases; saved as "P.bias"). The Model
	// owns them; the trained biases of adapted projections are in Modules
	// (peft.DeviceModule.BaseBias).
	OtherBiases map[string]*vk.Tensor
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
// adapter Options names (loaded, or fresh as NewAdapter makes it, a DoRA
// magnitude computed from the base weights) and builds the engine's layers
// over them, with the base biases trainable where the adapter's bias says
// so. The adapter is checked against the checkpoint before anything is
// uploaded. The caller releases the Model.
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
	a, fresh, err := chooseAdapter(o, &cfg, layers, d)
	if err != nil {
		return nil, err
	}
	if err := checkAdapter(a, &cfg); err != nil {
		return nil, err
	}
	m := &Model{Config: cfg, DType: d, Adapter: shallowCopy(a), Modules: peft.DeviceModules{}, OtherBiases: map[string]*vk.Tensor{}}
	for _, i := range layers {
		l, err := m.loadLayer(eng, ck, i, o.Seed, fresh)
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

// chooseAdapter returns the adapter Options names, loading or making it,
// and whether it is fresh (made from Options.Config).
func chooseAdapter(o Options, cfg *hf.Config, layers []int, d dtype.DType) (*peft.Adapter, bool, error) {
	set := 0
	for _, b := range []bool{o.Adapter != nil, o.AdapterDir != "", o.Config != nil} {
		if b {
			set++
		}
	}
	if set != 1 {
		return nil, false, fmt.Errorf("set exactly one of Adapter, AdapterDir and Config (%d set): %w", set, lora.ErrBadInput)
	}
	switch {
	case o.Adapter != nil:
		if err := o.Adapter.Validate(); err != nil {
			return nil, false, fmt.Errorf("adapter: %w", err)
		}
		return o.Adapter, false, nil
	case o.AdapterDir != "":
		a, err := peft.Load(o.AdapterDir)
		return a, false, err
	}
	// A fresh DoRA module's magnitude is a placeholder here: loadLayer
	// sets it from the base weight (initDoRA).
	a, err := newAdapter(*o.Config, cfg, layers, d, o.Seed, true)
	if err != nil {
		return nil, false, fmt.Errorf("fresh adapter: %w", err)
	}
	return a, true, nil
}

// shallowCopy is a with maps of its own, so that the Model can put in the
// starting values it fills in (base biases, DoRA magnitudes) without
// touching the caller's adapter: a changed module is replaced by a copy,
// never edited.
func shallowCopy(a *peft.Adapter) *peft.Adapter {
	return &peft.Adapter{Config: a.Config.Clone(), Modules: maps.Clone(a.Modules), OtherBiases: maps.Clone(a.OtherBiases)}
}

// checkAdapter refuses what the Model cannot train and modules that do not
// fit the checkpoint, naming the module.
func checkAdapter(a *peft.Adapter, cfg *hf.Config) error {
	if a.Config.FanInFanOut {
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
		if mod.BaseBias != nil && !cfg.HasBias(pm) {
			return fmt.Errorf("adapter module %s has a trained base bias (base_layer.bias) but the checkpoint's %s has no bias (%s): %w",
				p, pm, cfg.ModelType, lora.ErrBadInput)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(a.OtherBiases)) {
		pm, ok := known[p]
		if !ok || !cfg.HasBias(pm) {
			return fmt.Errorf("adapter bias %s.bias is not the bias of a decoder-layer projection of this checkpoint (%s, %d layers): %w",
				p, cfg.ModelType, cfg.NumHiddenLayers, lora.ErrBadInput)
		}
		out, _ := cfg.Shape(pm)
		if t := a.OtherBiases[p]; len(t.Shape) != 1 || t.Shape[0] != out {
			return fmt.Errorf("adapter bias %s.bias has shape %v, want [out=%d]: %w", p, t.Shape, out, lora.ErrBadInput)
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
// layers. A trainable base bias the adapter does not carry starts at the
// checkpoint's, copied into the adapter's tensors (the layer's own stays
// frozen and unused); a fresh DoRA module's magnitude starts at PEFT's row
// norms (initDoRA). On error what it allocated is released (the modules
// and biases stay in m.Modules and m.OtherBiases for m.Release).
func (m *Model) loadLayer(eng *lora.Engine, ck *hf.Checkpoint, i int, seed uint64, fresh bool) (*Layer, error) {
	dev := eng.Device()
	lw, err := ck.Layer(i, dev, m.DType)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Layer, error) {
		lw.Release()
		return nil, err
	}
	for _, pm := range hf.Modules {
		p := hf.Prefix(i, pm)
		base := lw.Linear(pm)
		mod := m.Adapter.Modules[p]
		if mod == nil {
			if err := m.otherBias(dev, p, base.Bias); err != nil {
				return fail(err)
			}
			continue
		}
		if mod.BiasTrainable && mod.BaseBias == nil && base.Bias != nil {
			t, err := hostBias(base.Bias, m.DType)
			if err != nil {
				return fail(fmt.Errorf("%s: base bias: %w", p, err))
			}
			c := *mod
			c.BaseBias = t
			mod = &c
			m.Adapter.Modules[p] = mod
		}
		dm, err := mod.Upload(dev, m.DType)
		if err != nil {
			return fail(err)
		}
		m.Modules[p] = dm
		if fresh && mod.UseDoRA {
			if err := m.initDoRA(eng, base.Weight, p); err != nil {
				return fail(fmt.Errorf("%s: DoRA magnitude: %w", p, err))
			}
		}
	}
	l, err := buildLayer(eng, lw, m.Modules, m.OtherBiases, seed)
	if err != nil {
		return fail(err)
	}
	return l, nil
}

// otherBias puts the trainable bias of projection p, which has no adapter,
// on the device when the config trains every bias (bias "all") and the
// projection has one: the adapter's saved value if it has one, else a copy
// of the checkpoint's (recorded in m.Adapter.OtherBiases as the starting
// value, in the layer dtype).
func (m *Model) otherBias(dev *vk.Device, p string, base *vk.Tensor) error {
	if m.Adapter.Config.Bias != peft.BiasAll || base == nil {
		return nil
	}
	h := m.Adapter.OtherBiases[p]
	if h == nil {
		var err error
		if h, err = hostBias(base, m.DType); err != nil {
			return fmt.Errorf("%s: base bias: %w", p, err)
		}
		if m.Adapter.OtherBiases == nil {
			m.Adapter.OtherBiases = map[string]*peft.Tensor{}
		}
		m.Adapter.OtherBiases[p] = h
	}
	t, err := dev.TensorFrom(m.DType, h.Data, h.Shape...)
	if err != nil {
		return fmt.Errorf("%s: bias %v: %w", p, h.Shape, err)
	}
	m.OtherBiases[p] = t
	return nil
}

// hostBias downloads a checkpoint bias (in the layer dtype d) as a host
// tensor stored as d: PEFT saves a trained bias in the model's dtype.
func hostBias(b *vk.Tensor, d dtype.DType) (*peft.Tensor, error) {
	data, err := b.Float32()
	if err != nil {
		return nil, err
	}
	return &peft.Tensor{Shape: b.Shape(), DType: d, Data: data}, nil
}

// buildLayer makes the engine's layers over lw with the adapter's modules
// and the trainable biases of the projections without adapter.
func buildLayer(eng *lora.Engine, lw *hf.LayerWeights, ms peft.DeviceModules, others map[string]*vk.Tensor, seed uint64) (*Layer, error) {
	attn, mlp, err := lw.Modules(func(i int, pm hf.Module) (*lora.LoRALinear, error) {
		p := hf.Prefix(i, pm)
		if b := others[p]; b != nil {
			return &lora.LoRALinear{Bias: b, BiasTrainable: true}, nil
		}
		return ms.Adapter(p)
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

// Release frees the base weights, the adapter's device tensors and the
// trainable biases; safe to call twice and on nil. The layers built over
// them are unusable after it.
func (m *Model) Release() {
	if m == nil {
		return
	}
	for _, l := range m.Layers {
		l.Weights.Release()
	}
	m.Modules.Release()
	for _, t := range m.OtherBiases {
		t.Release()
	}
	m.Layers, m.Modules, m.OtherBiases = nil, nil, nil
}

// errNoLayers is returned by the methods of a released Model.
var errNoLayers = errors.New("model is nil or released")
