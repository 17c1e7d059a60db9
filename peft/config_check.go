package peft

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/vklora/vklora/lora"
)

// Validate checks c as PEFT's LoraConfig and its layers would, and refuses
// what this package does not implement. Load runs it; Save runs it before
// writing, so a saved config means what the Config says.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf(format+": %w", append(args, lora.ErrBadInput)...)
	}
	notImpl := func(format string, args ...any) error {
		return fmt.Errorf(format+": %w", append(args, lora.ErrNotImplemented)...)
	}
	switch {
	case c.PeftType != "LORA":
		return notImpl(`key "peft_type" is %q: only "LORA" adapters are supported`, c.PeftType)
	case c.TaskType != "" && !slices.Contains(taskTypes, c.TaskType):
		return bad(`key "task_type" is %q, want null or one of %s`, c.TaskType, strings.Join(taskTypes, ", "))
	case c.R < 1:
		return bad(`key "r" is %d, want a rank ≥ 1`, c.R)
	case math.IsNaN(c.LoRAAlpha) || math.IsInf(c.LoRAAlpha, 0):
		return bad(`key "lora_alpha" is %v, want a finite number`, c.LoRAAlpha)
	case c.LoRADropout == 1:
		return notImpl(`key "lora_dropout" is 1: the LoRA branch would see only zeros`)
	case !(c.LoRADropout >= 0 && c.LoRADropout < 1):
		return bad(`key "lora_dropout" is %v, want a probability in [0, 1)`, c.LoRADropout)
	case c.Bias != BiasNone && c.Bias != BiasAll && c.Bias != BiasLoRAOnly:
		return bad(`key "bias" is %q, want "none", "all" or "lora_only"`, c.Bias)
	case c.UseDoRA && c.LoRABias:
		// LoraConfig.__post_init__ raises the same: DoRA's norm has no term for lora_B's bias.
		return bad(`keys "use_dora" and "lora_bias" are both true: PEFT refuses lora_bias with DoRA`)
	case c.LoRABias && c.InitLoRAWeights.Name != "":
		return bad(`key "lora_bias" is true with init_lora_weights %q: PEFT allows lora_bias only with init_lora_weights true or false`, c.InitLoRAWeights.Name)
	}
	if err := c.InitLoRAWeights.check(); err != nil {
		return err
	}
	if err := c.checkSelection(); err != nil {
		return err
	}
	for _, p := range c.RankPattern {
		if p.R < 1 {
			return bad(`key "rank_pattern" gives %q rank %d, want ≥ 1`, p.Key, p.R)
		}
		if _, err := compilePatternKey(p.Key); err != nil {
			return bad(`key "rank_pattern": %v`, err)
		}
	}
	for _, p := range c.AlphaPattern {
		if math.IsNaN(p.Alpha) || math.IsInf(p.Alpha, 0) {
			return bad(`key "alpha_pattern" gives %q alpha %v, want a finite number`, p.Key, p.Alpha)
		}
		if _, err := compilePatternKey(p.Key); err != nil {
			return bad(`key "alpha_pattern": %v`, err)
		}
	}
	return c.checkKept()
}

// checkSelection checks target_modules, exclude_modules, layers_to_transform
// and layers_pattern as LoraConfig.__post_init__ does, and compiles their
// regular expressions.
func (c *Config) checkSelection() error {
	regexTarget := c.TargetModules != nil && c.TargetModules.IsRegex
	switch {
	case regexTarget && c.LayersToTransform != nil:
		return fmt.Errorf(`key "layers_to_transform" cannot be used when "target_modules" is a regular expression: %w`, lora.ErrBadInput)
	case regexTarget && c.LayersPattern != nil:
		return fmt.Errorf(`key "layers_pattern" cannot be used when "target_modules" is a regular expression: %w`, lora.ErrBadInput)
	case len(c.LayersPattern) > 0 && c.LayersToTransform == nil:
		return fmt.Errorf(`key "layers_pattern" needs "layers_to_transform": %w`, lora.ErrBadInput)
	}
	if regexTarget && c.TargetModules.Regex != AllLinear {
		if _, err := compileFull(c.TargetModules.Regex); err != nil {
			return fmt.Errorf(`key "target_modules": %v: %w`, err, lora.ErrBadInput)
		}
	}
	if c.ExcludeModules != nil && c.ExcludeModules.IsRegex {
		if _, err := compileFull(c.ExcludeModules.Regex); err != nil {
			return fmt.Errorf(`key "exclude_modules": %v: %w`, err, lora.ErrBadInput)
		}
	}
	for _, p := range c.LayersPattern {
		if _, err := compileLayerIndex(p); err != nil {
			return fmt.Errorf(`key "layers_pattern": %v: %w`, err, lora.ErrBadInput)
		}
	}
	return nil
}

// check classifies init_lora_weights. An initialisation only sets the
// starting weights, which the saved ones replace, unless it also rewrites
// the frozen base weight (PiSSA, OLoRA, CorDA, LoftQ, LoRA-GA: the adapter
// then belongs to a residual W that the engine does not have) or changes
// training (MiCA freezes lora_B).
func (w InitWeights) check() error {
	name := strings.ToLower(w.Name)
	switch {
	case w.Name == "", name == "gaussian", w.Name == "eva", w.Name == "orthogonal":
		return nil
	case strings.HasPrefix(w.Name, "pissa"), strings.HasPrefix(w.Name, "corda"), name == "olora",
		w.Name == "loftq", w.Name == "lora_ga":
		return fmt.Errorf(`key "init_lora_weights" is %q: that initialisation rewrites the base weight, which is not implemented: %w`,
			w.Name, lora.ErrNotImplemented)
	case w.Name == "mica":
		return fmt.Errorf(`key "init_lora_weights" is "mica": MiCA freezes lora_B in training, which is not implemented: %w`, lora.ErrNotImplemented)
	}
	return fmt.Errorf(`key "init_lora_weights" is %q, which PEFT does not know: %w`, w.Name, lora.ErrBadInput)
}

// checkKept refuses a feature key that is on, and any key in Kept or
// Unknown that does not belong there.
func (c *Config) checkKept() error {
	for _, k := range slices.Sorted(maps.Keys(c.Kept)) {
		spec, known := configKeys[k]
		if !known || spec.kind == typed || spec.kind == dropped {
			return fmt.Errorf("Config.Kept holds %q, which is not a kept key: %w", k, lora.ErrBadInput)
		}
		v, err := parseJSON(c.Kept[k])
		if err != nil {
			return fmt.Errorf("Config.Kept[%q] is not valid JSON: %v: %w", k, err, lora.ErrBadInput)
		}
		if (spec.kind == offOnly && !pyFalsy(v)) || (spec.kind == nullOnly && v != nil) {
			return fmt.Errorf("key %q is %s: it turns on %s, which is not implemented: %w",
				k, describe(v), spec.feature, lora.ErrNotImplemented)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Unknown)) {
		raw := c.Unknown[k]
		if _, known := configKeys[k]; known {
			return fmt.Errorf("Config.Unknown holds %q, which is a known key: %w", k, lora.ErrBadInput)
		}
		if _, err := parseJSON(raw); err != nil {
			return fmt.Errorf("Config.Unknown[%q] is not valid JSON: %v: %w", k, err, lora.ErrBadInput)
		}
	}
	return nil
}

// pyFalsy is Python's truth test for a JSON value: PEFT switches these
// features on with `if config.x:`.
func pyFalsy(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case bool:
		return !t
	case string:
		return t == ""
	case json.Number:
		f, err := strconv.ParseFloat(string(t), 64)
		return err == nil && f == 0
	case []any:
		return len(t) == 0
	case object:
		return len(t) == 0
	}
	return false
}
