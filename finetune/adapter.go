package finetune

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/hf"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/peft"
)

// defaultTargets is PEFT's target_modules for a config that leaves it null
// (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING): the same for every
// model_type package hf reads.
var defaultTargets = []string{"q_proj", "v_proj"}

// NewAdapter is get_peft_model's fresh adapter for the decoder layers
// (nil: all) of a checkpoint with config cfg under LoRA config c: a module
// for every projection c targets, stored as d, with lora_A drawn from seed
// as PEFT's init_lora_weights says (true: kaiming-uniform, U(−1/√in, 1/√in);
// "gaussian": N(0, 1/r²); false: that lora_A and lora_B ~ U(−1/√r, 1/√r),
// nn.Linear's default) and lora_B zero (except for false). A null
// target_modules becomes PEFT's default for the architecture (q_proj,
// v_proj) and "all-linear" the seven projections, so that the saved config
// names the modules PEFT would adapt. c itself is not changed.
//
// With bias "all" or "lora_only" the modules train their base biases but
// carry none (BaseBias nil): they start at the checkpoint's, which Load
// copies in. A use_dora config is refused (lora.ErrBadInput): its
// magnitude starts at the base weight's row norms, so a fresh DoRA adapter
// comes from Load or Open with Options.Config, which compute them.
func NewAdapter(c peft.Config, cfg *hf.Config, layers []int, d dtype.DType, seed uint64) (*peft.Adapter, error) {
	a, err := newAdapter(c, cfg, layers, d, seed, false)
	if err != nil {
		return nil, fmt.Errorf("finetune: NewAdapter: %w", err)
	}
	return a, nil
}

// newAdapter is NewAdapter; with dora, a use_dora config gets modules whose
// magnitude is peft.NewModule's placeholder (ones), for Load to set.
func newAdapter(c peft.Config, cfg *hf.Config, layers []int, d dtype.DType, seed uint64, dora bool) (*peft.Adapter, error) {
	if cfg == nil {
		return nil, fmt.Errorf("checkpoint config is nil: %w", lora.ErrBadInput)
	}
	c = c.Clone()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.UseDoRA && !dora {
		return nil, fmt.Errorf("use_dora: PEFT starts the magnitude at the base weight's row norms ‖W + s·B·A‖, which NewAdapter has no weights for: pass the config as Options.Config to Load or Open, which compute them on the device: %w", lora.ErrBadInput)
	}
	init, err := initOf(c.InitLoRAWeights)
	if err != nil {
		return nil, err
	}
	switch {
	case c.TargetModules == nil:
		c.TargetModules = &peft.ModuleSet{Names: append([]string(nil), defaultTargets...)}
	case c.TargetModules.IsRegex && c.TargetModules.Regex == peft.AllLinear:
		c.TargetModules = &peft.ModuleSet{}
		for _, pm := range hf.Modules {
			c.TargetModules.Names = append(c.TargetModules.Names, string(pm))
		}
	}
	ls, err := layerList(layers, cfg.NumHiddenLayers)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x6c6f7261))
	a := &peft.Adapter{Config: c, Modules: map[string]*peft.Module{}}
	for _, i := range ls {
		for _, pm := range hf.Modules {
			p := hf.Prefix(i, pm)
			ok, err := c.Targets(p)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			out, in := cfg.Shape(pm)
			mod, err := c.NewModule(p, in, out, d)
			if err != nil {
				return nil, err
			}
			init(rng, mod)
			a.Modules[p] = mod
		}
	}
	if len(a.Modules) == 0 {
		return nil, fmt.Errorf("target_modules selects no projection of layers %v: %w", ls, lora.ErrBadInput)
	}
	return a, a.Validate()
}

// initOf returns the initialisation init_lora_weights names.
func initOf(w peft.InitWeights) (func(*rand.Rand, *peft.Module), error) {
	switch {
	case w.Name == "" && w.Bool:
		return func(rng *rand.Rand, m *peft.Module) { uniform(rng, m.A, 1/math.Sqrt(float64(m.In()))) }, nil
	case w.Name == "gaussian":
		return func(rng *rand.Rand, m *peft.Module) { normal(rng, m.A, 1/float64(m.R)) }, nil
	case w.Name == "" && !w.Bool:
		return func(rng *rand.Rand, m *peft.Module) {
			uniform(rng, m.A, 1/math.Sqrt(float64(m.In())))
			uniform(rng, m.B, 1/math.Sqrt(float64(m.R)))
		}, nil
	}
	return nil, fmt.Errorf("init_lora_weights %q: a fresh adapter here is initialised as true, false or \"gaussian\" only: %w", w.Name, lora.ErrNotImplemented)
}

func uniform(rng *rand.Rand, t *peft.Tensor, bound float64) {
	for i := range t.Data {
		t.Data[i] = dtype.Round(t.DType, float32((2*rng.Float64()-1)*bound))
	}
}

func normal(rng *rand.Rand, t *peft.Tensor, std float64) {
	for i := range t.Data {
		t.Data[i] = dtype.Round(t.DType, float32(rng.NormFloat64()*std))
	}
}
