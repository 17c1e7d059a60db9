package peft

import (
	"encoding/json"
	"maps"
	"slices"
)

// File names PEFT's save_pretrained writes and from_pretrained reads.
const (
	ConfigName  = "adapter_config.json"
	WeightsName = "adapter_model.safetensors"
)

// Bias values of LoraConfig.bias.
const (
	BiasNone     = "none"      // no base bias is trained
	BiasAll      = "all"       // every bias of the model is trained and saved
	BiasLoRAOnly = "lora_only" // the biases of the adapted Linears are trained and saved
)

// AllLinear is the target_modules shorthand for every Linear but the output
// layer. PEFT replaces it by the module list when it builds the model, so
// saved configs rarely hold it; when one does, any module is accepted.
const AllLinear = "all-linear"

// Config is an adapter_config.json of peft_type "LORA": the keys that
// define the adapter's math as typed fields, and every other key PEFT
// writes verbatim in Kept. Strings that PEFT writes as null are "".
type Config struct {
	PeftType            string // always "LORA"
	TaskType            string // "CAUSAL_LM", "SEQ_CLS", ... or "" (null)
	BaseModelNameOrPath string
	Revision            string
	InferenceMode       bool // save_pretrained always writes true

	R         int     // r, the rank of modules that rank_pattern does not name
	LoRAAlpha float64 // lora_alpha, likewise
	UseRSLoRA bool    // scale alpha/√r instead of alpha/r
	// LoRADropout is lora_dropout, the probability in [0, 1) of zeroing an
	// element of the LoRA branch's input in training.
	LoRADropout float64
	Bias        string // BiasNone, BiasAll or BiasLoRAOnly
	UseDoRA     bool   // use_dora: a trained magnitude vector per module
	LoRABias    bool   // lora_bias: lora_B has a bias
	// FanInFanOut marks base weights stored [in, out] (GPT-2's Conv1D). The
	// adapter tensors are [r, in] and [out, r] either way; only the base
	// weight must be transposed before it reaches the engine.
	FanInFanOut     bool
	InitLoRAWeights InitWeights

	// TargetModules selects the adapted modules; nil is null (PEFT then
	// chose them by architecture, so any module is accepted).
	TargetModules *ModuleSet
	// ExcludeModules deselects modules; nil is null.
	ExcludeModules *ModuleSet
	// LayersToTransform restricts a TargetModules list to these layer
	// indices; nil is null. A single integer in the file loads as one
	// index (PEFT treats both alike).
	LayersToTransform []int
	// LayersPattern names the module list that holds the layers ("layers",
	// "h"); nil is null, and a one-string form loads as a list of one.
	LayersPattern []string
	// RankPattern and AlphaPattern override r and lora_alpha per module, in
	// file order: the first key that matches a module wins (see Match).
	RankPattern  []RankPattern
	AlphaPattern []AlphaPattern

	// Kept holds the keys PEFT writes that do not change the math or that
	// are at the value meaning "off" (auto_mapping, peft_version, loftq_config,
	// use_qalora false, ...), as compact JSON, written back unchanged. Load
	// fills in PEFT's default for any such key the file lacks.
	Kept map[string]json.RawMessage
	// Unknown holds keys this package does not know, when
	// Options.AllowUnknownKeys let them through; Save writes them back.
	Unknown map[string]json.RawMessage
}

// InitWeights is init_lora_weights: a boolean, or the name of an
// initialisation when Name is not "".
type InitWeights struct {
	Bool bool
	Name string
}

// ModuleSet is target_modules or exclude_modules in one of PEFT's two
// forms: a list of names (a module matches when its path equals a name or
// ends with "."+name) or one regular expression that must match the whole
// path.
type ModuleSet struct {
	IsRegex bool
	Regex   string
	Names   []string
}

// RankPattern is one rank_pattern entry: modules that Key matches get rank R.
type RankPattern struct {
	Key string
	R   int
}

// AlphaPattern is one alpha_pattern entry: modules that Key matches get Alpha.
type AlphaPattern struct {
	Key   string
	Alpha float64
}

// keyKind is how Load treats a config key.
type keyKind int

const (
	// typed keys are parsed into Config fields and checked.
	typed keyKind = iota
	// kept keys do not change the math: any value is kept verbatim.
	kept
	// offOnly keys turn on a PEFT feature this package does not implement:
	// only a value Python treats as off (null, false, [], {}) is accepted,
	// and kept; anything else is refused, naming the key and the feature.
	offOnly
	// nullOnly keys are offOnly keys where PEFT tests "is not None", so
	// even an empty list or object turns the feature on.
	nullOnly
	// dropped keys are removed on load, as PEFT removes them.
	dropped
)

// configKeys lists every key LoraConfig.to_dict writes (PEFT 0.21), with
// how it is treated; for the refused ones, the feature they switch on.
var configKeys = map[string]struct {
	kind    keyKind
	feature string
}{
	"peft_type": {typed, ""}, "task_type": {typed, ""}, "base_model_name_or_path": {typed, ""},
	"revision": {typed, ""}, "inference_mode": {typed, ""},
	"r": {typed, ""}, "lora_alpha": {typed, ""}, "use_rslora": {typed, ""}, "lora_dropout": {typed, ""},
	"bias": {typed, ""}, "use_dora": {typed, ""}, "lora_bias": {typed, ""}, "fan_in_fan_out": {typed, ""},
	"init_lora_weights": {typed, ""}, "target_modules": {typed, ""}, "exclude_modules": {typed, ""},
	"layers_to_transform": {typed, ""}, "layers_pattern": {typed, ""},
	"rank_pattern": {typed, ""}, "alpha_pattern": {typed, ""},

	"auto_mapping":        {kept, ""}, // the base model class, for AutoPeftModel
	"peft_version":        {kept, ""},
	"megatron_core":       {kept, ""}, // module name, used only with megatron_config
	"qalora_group_size":   {kept, ""}, // used only with use_qalora
	"loftq_config":        {kept, ""}, // used only with init_lora_weights "loftq", which is refused
	"eva_config":          {kept, ""}, // EVA only initialises; the saved weights replace it
	"corda_config":        {kept, ""}, // used only with init_lora_weights "corda", which is refused
	"ensure_weight_tying": {kept, ""}, // ties embedding adapters, which are refused by key

	"modules_to_save":         {offOnly, "modules_to_save (whole modules, e.g. a classification head, trained and saved beside the adapter)"},
	"megatron_config":         {offOnly, "Megatron tensor-parallel LoRA layers"},
	"velora_config":           {offOnly, "VeLoRA (lora_A's backward from compressed activations)"},
	"alora_invocation_tokens": {offOnly, "aLoRA (the adapter acts only from the invocation tokens on)"},
	"use_qalora":              {offOnly, "QALoRA (the input is pooled in groups before lora_A)"},
	"monteclora_config":       {offOnly, "MonteCLoRA (Monte Carlo sampled adapters)"},
	"layer_replication":       {offOnly, "layer_replication (decoder layers repeated, each with its own adapter)"},
	"target_parameters":       {offOnly, "target_parameters (LoRA on bare nn.Parameters such as MoE experts)"},
	"use_bdlora":              {offOnly, "BD-LoRA (block-diagonal lora_A or lora_B)"},
	"arrow_config":            {offOnly, "Arrow routing among several adapters"},
	"kasa_config":             {offOnly, "KaSA (the base weight's singular values truncated, lora_diag added)"},
	"trainable_token_indices": {nullOnly, "trainable tokens (embedding rows trained beside the adapter)"},
	"lora_ga_config":          {nullOnly, "LoRA-GA (adapters initialised from gradients against a rewritten base weight)"},

	"runtime_config": {dropped, ""}, // runtime only: PEFT warns and deletes it
}

// keptDefaults are the values LoraConfig.to_dict writes for the kept and
// off-only keys when nothing sets them.
var keptDefaults = map[string]string{
	"auto_mapping": "null", "peft_version": "null", "megatron_core": `"megatron.core"`,
	"qalora_group_size": "16", "loftq_config": "{}", "eva_config": "null", "corda_config": "null",
	"ensure_weight_tying": "false",
	"modules_to_save":     "null", "megatron_config": "null", "velora_config": "null",
	"alora_invocation_tokens": "null", "use_qalora": "false", "monteclora_config": "null",
	"layer_replication": "null", "target_parameters": "null", "use_bdlora": "null", "arrow_config": "null",
	"kasa_config": "null", "trainable_token_indices": "null", "lora_ga_config": "null",
}

// taskTypes are PEFT's TaskType values.
var taskTypes = []string{"SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION"}

// DefaultConfig is LoraConfig() as PEFT 0.21 defines it: r 8, lora_alpha 8,
// no dropout, bias "none", init_lora_weights true, target_modules null.
func DefaultConfig() Config {
	c := Config{PeftType: "LORA", R: 8, LoRAAlpha: 8, Bias: BiasNone, InitLoRAWeights: InitWeights{Bool: true}}
	c.fillKept()
	return c
}

// fillKept gives every kept and off-only key its default unless set.
func (c *Config) fillKept() {
	if c.Kept == nil {
		c.Kept = map[string]json.RawMessage{}
	}
	for k, v := range keptDefaults {
		if _, ok := c.Kept[k]; !ok {
			c.Kept[k] = json.RawMessage(v)
		}
	}
}

// Clone returns a deep copy of c.
func (c *Config) Clone() Config {
	d := *c
	if c.TargetModules != nil {
		t := *c.TargetModules
		t.Names = slices.Clone(t.Names)
		d.TargetModules = &t
	}
	if c.ExcludeModules != nil {
		t := *c.ExcludeModules
		t.Names = slices.Clone(t.Names)
		d.ExcludeModules = &t
	}
	d.LayersToTransform = slices.Clone(c.LayersToTransform)
	d.LayersPattern = slices.Clone(c.LayersPattern)
	d.RankPattern = slices.Clone(c.RankPattern)
	d.AlphaPattern = slices.Clone(c.AlphaPattern)
	d.Kept = cloneRaw(c.Kept)
	d.Unknown = cloneRaw(c.Unknown)
	return d
}

func cloneRaw(m map[string]json.RawMessage) map[string]json.RawMessage {
	if m == nil {
		return nil
	}
	out := maps.Clone(m)
	for k, v := range out {
		out[k] = slices.Clone(v)
	}
	return out
}
