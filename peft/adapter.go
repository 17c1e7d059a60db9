package peft

import (
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
)

// Adapter is one PEFT LoRA adapter: its config and its adapted modules.
type Adapter struct {
	Config Config
	// Modules are the adapted Linears by module path, e.g.
	// "model.layers.0.self_attn.q_proj" (the saved key without
	// "base_model.model." and the parameter suffix).
	Modules map[string]*Module
	// OtherBiases are, with bias "all", the trained biases of modules that
	// have no adapter (PEFT trains every bias of the model and saves it), by
	// module path. They round-trip through Save; nothing else uses them.
	OtherBiases map[string]*Tensor
}

// Tensor is a host tensor: its values widened to float32, its shape, and
// the dtype it is stored in (F32, F16 or BF16). Values of a Tensor that
// came from a file are exact, so saving it writes back the same bytes.
type Tensor struct {
	Shape []int
	DType dtype.DType
	Data  []float32
}

// Module is one adapted Linear, with the values PEFT derives for it from the
// config (rank_pattern and alpha_pattern applied).
type Module struct {
	Path      string
	R         int
	Alpha     float64
	Scale     float64 // Alpha/R, or Alpha/√R with UseRSLoRA: PEFT's scaling
	UseRSLoRA bool
	Dropout   float64 // lora_dropout
	UseDoRA   bool
	// FanInFanOut: the base weight is stored [in, out] (Conv1D). A and B are
	// laid out as for any Linear.
	FanInFanOut bool
	// BiasTrainable: the config's bias is "all" or "lora_only", so the base
	// bias is trained (and saved in BaseBias when the base layer has one).
	BiasTrainable bool

	A         *Tensor // lora_A.weight [R, in]
	B         *Tensor // lora_B.weight [out, R]
	LoRABias  *Tensor // lora_B.bias [out] with lora_bias, else nil
	Magnitude *Tensor // lora_magnitude_vector [out] with use_dora, else nil
	BaseBias  *Tensor // base_layer.bias [out], trained, or nil
}

// In is the module's input width (lora_A's columns).
func (m *Module) In() int { return m.A.Shape[1] }

// Out is the module's output width (lora_B's rows).
func (m *Module) Out() int { return m.B.Shape[0] }

// Paths lists the adapted module paths in sorted order.
func (a *Adapter) Paths() []string { return slices.Sorted(maps.Keys(a.Modules)) }

// NewModule makes the module PEFT would create at path for a Linear of in
// inputs and out outputs under c: r, alpha, scale and the flags from the
// config, A and B zero (PEFT initialises A randomly and B to zero; fill A
// as the training recipe wants), a zero lora_B bias with lora_bias, and a
// DoRA magnitude of ones with use_dora (PEFT starts it at ‖W‖ per row,
// which needs the base weight). Tensors are stored as d.
func (c *Config) NewModule(path string, in, out int, d dtype.DType) (*Module, error) {
	if !d.IsFloat() {
		return nil, fmt.Errorf("peft: NewModule %s: dtype %v is not f32, f16 or bf16: %w", path, d, lora.ErrBadInput)
	}
	if in < 1 || out < 1 {
		return nil, fmt.Errorf("peft: NewModule %s: in %d and out %d must be ≥ 1: %w", path, in, out, lora.ErrBadInput)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("peft: NewModule %s: %w", path, err)
	}
	m := &Module{Path: path}
	if err := c.fillModule(m); err != nil {
		return nil, fmt.Errorf("peft: NewModule %s: %w", path, err)
	}
	m.A = zeros(d, m.R, in)
	m.B = zeros(d, out, m.R)
	if c.LoRABias {
		m.LoRABias = zeros(d, out)
	}
	if c.UseDoRA {
		m.Magnitude = zeros(d, out)
		for i := range m.Magnitude.Data {
			m.Magnitude.Data[i] = 1
		}
	}
	return m, nil
}

func zeros(d dtype.DType, shape ...int) *Tensor {
	return &Tensor{Shape: shape, DType: d, Data: make([]float32, numel(shape))}
}

func numel(shape []int) int {
	n := 1
	for _, s := range shape {
		n *= s
	}
	return n
}

// fillModule sets m's derived fields from c for m.Path, after checking
// that c puts an adapter there.
func (c *Config) fillModule(m *Module) error {
	if m.Path == "" {
		return fmt.Errorf("module path is empty: %w", lora.ErrBadInput)
	}
	ok, err := c.Targets(m.Path)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("module %q is not selected by the config (target_modules, exclude_modules, layers_to_transform), so PEFT would not load its weights: %w",
			m.Path, lora.ErrBadInput)
	}
	r, alpha, err := c.RankAlpha(m.Path)
	if err != nil {
		return err
	}
	m.R, m.Alpha, m.Scale, m.UseRSLoRA = r, alpha, lora.LoRAScale(alpha, r, c.UseRSLoRA), c.UseRSLoRA
	m.Dropout, m.UseDoRA, m.FanInFanOut = c.LoRADropout, c.UseDoRA, c.FanInFanOut
	m.BiasTrainable = c.Bias != BiasNone
	return nil
}

// Validate checks a against its config: every module is one the config
// targets, with the r, alpha, scale and flags PEFT derives for it, and
// tensors of the shapes PEFT creates (A [r, in], B [out, r], lora_B bias,
// magnitude and base bias [out]) present exactly when the config calls for
// them. Save runs it, so that PEFT loads what the Adapter says.
func (a *Adapter) Validate() error {
	if a == nil {
		return fmt.Errorf("adapter is nil: %w", lora.ErrBadInput)
	}
	if err := a.Config.Validate(); err != nil {
		return err
	}
	for _, p := range a.Paths() {
		m := a.Modules[p]
		if m == nil || m.Path != p {
			return fmt.Errorf("Modules[%q] is nil or has another Path: %w", p, lora.ErrBadInput)
		}
		if err := a.Config.checkModule(m); err != nil {
			return fmt.Errorf("module %s: %w", p, err)
		}
	}
	if len(a.OtherBiases) > 0 && a.Config.Bias != BiasAll {
		return fmt.Errorf("OtherBiases are saved only with bias \"all\", config has %q: %w", a.Config.Bias, lora.ErrBadInput)
	}
	for _, p := range slices.Sorted(maps.Keys(a.OtherBiases)) {
		if _, dup := a.Modules[p]; dup {
			return fmt.Errorf("OtherBiases[%q] is an adapted module, whose bias belongs in Module.BaseBias: %w", p, lora.ErrBadInput)
		}
		t := a.OtherBiases[p]
		if t == nil {
			return fmt.Errorf("OtherBiases[%q] is nil: %w", p, lora.ErrBadInput)
		}
		if err := t.check(); err != nil {
			return fmt.Errorf("OtherBiases[%q]: %w", p, err)
		}
		// Its key must read back as the same bias, not as a LoRA parameter.
		if q, _, other, err := classify(&a.Config, keyPrefix+p+suffixBias); err != nil || !other || q != p {
			return fmt.Errorf("OtherBiases[%q]: its key %q would load as another tensor: %w", p, keyPrefix+p+suffixBias, lora.ErrBadInput)
		}
	}
	return nil
}

// checkModule compares m with what c derives for m.Path.
func (c *Config) checkModule(m *Module) error {
	want := Module{Path: m.Path}
	if err := c.fillModule(&want); err != nil {
		return err
	}
	switch {
	case m.R != want.R || m.Alpha != want.Alpha:
		return fmt.Errorf("r %d and alpha %v differ from the config's %d and %v (r, lora_alpha, rank_pattern, alpha_pattern): %w",
			m.R, m.Alpha, want.R, want.Alpha, lora.ErrBadInput)
	case m.Scale != want.Scale:
		return fmt.Errorf("scale %v differs from PEFT's %v for r %d, alpha %v, use_rslora %v: %w",
			m.Scale, want.Scale, m.R, m.Alpha, c.UseRSLoRA, lora.ErrBadInput)
	case m.UseRSLoRA != want.UseRSLoRA || m.Dropout != want.Dropout || m.UseDoRA != want.UseDoRA ||
		m.FanInFanOut != want.FanInFanOut || m.BiasTrainable != want.BiasTrainable:
		return fmt.Errorf("flags (use_rslora %v, dropout %v, use_dora %v, fan_in_fan_out %v, bias trainable %v) differ from the config's (%v, %v, %v, %v, %v): %w",
			m.UseRSLoRA, m.Dropout, m.UseDoRA, m.FanInFanOut, m.BiasTrainable,
			want.UseRSLoRA, want.Dropout, want.UseDoRA, want.FanInFanOut, want.BiasTrainable, lora.ErrBadInput)
	}
	if m.A == nil || m.B == nil {
		return fmt.Errorf("lora_A and lora_B must both be set: %w", lora.ErrBadInput)
	}
	for _, x := range []struct {
		name string
		t    *Tensor
	}{{"lora_A", m.A}, {"lora_B", m.B}, {"lora_B bias", m.LoRABias}, {"magnitude", m.Magnitude}, {"base bias", m.BaseBias}} {
		if x.t == nil {
			continue
		}
		if err := x.t.check(); err != nil {
			return fmt.Errorf("%s: %w", x.name, err)
		}
	}
	if len(m.A.Shape) != 2 || m.A.Shape[0] != m.R || len(m.B.Shape) != 2 || m.B.Shape[1] != m.R {
		return fmt.Errorf("lora_A %v and lora_B %v must be [r=%d, in] and [out, r=%d]: %w", m.A.Shape, m.B.Shape, m.R, m.R, lora.ErrBadInput)
	}
	out := m.B.Shape[0]
	if err := vector("lora_B bias", m.LoRABias, c.LoRABias, "lora_bias", out); err != nil {
		return err
	}
	if err := vector("magnitude", m.Magnitude, c.UseDoRA, "use_dora", out); err != nil {
		return err
	}
	if m.BaseBias != nil {
		return vector("base bias", m.BaseBias, c.Bias != BiasNone, "bias != \"none\"", out)
	}
	return nil
}

// vector checks an optional [out] tensor that the config's flag requires.
func vector(name string, t *Tensor, flag bool, flagName string, out int) error {
	switch {
	case flag && t == nil:
		return fmt.Errorf("%s is missing but the config has %s: %w", name, flagName, lora.ErrBadInput)
	case !flag && t != nil:
		return fmt.Errorf("%s is set but the config does not have %s: %w", name, flagName, lora.ErrBadInput)
	case t != nil && (len(t.Shape) != 1 || t.Shape[0] != out):
		return fmt.Errorf("%s %v must be [out=%d]: %w", name, t.Shape, out, lora.ErrBadInput)
	}
	return nil
}

// check validates a tensor's dtype, shape and data length.
func (t *Tensor) check() error {
	if !t.DType.IsFloat() {
		return fmt.Errorf("dtype %v is not f32, f16 or bf16: %w", t.DType, lora.ErrBadInput)
	}
	n := 1
	for _, s := range t.Shape {
		if s < 1 || n > math.MaxInt32/s {
			return fmt.Errorf("shape %v has a dimension < 1 or too many elements: %w", t.Shape, lora.ErrBadInput)
		}
		n *= s
	}
	if len(t.Data) != n {
		return fmt.Errorf("shape %v holds %d values, Data has %d: %w", t.Shape, n, len(t.Data), lora.ErrBadInput)
	}
	return nil
}

// clone deep-copies a tensor (nil stays nil).
func (t *Tensor) clone() *Tensor {
	if t == nil {
		return nil
	}
	return &Tensor{Shape: slices.Clone(t.Shape), DType: t.DType, Data: slices.Clone(t.Data)}
}
