package peft

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/vklora/vklora/lora"
)

// Options tune Load and ParseConfig.
type Options struct {
	// AllowUnknownKeys loads a config with keys this package does not know
	// (a newer PEFT's, say): each becomes a warning and is kept in
	// Config.Unknown instead of failing the load. Such a key may change the
	// math, which is why this is off by default.
	AllowUnknownKeys bool
}

// ParseConfig decodes an adapter_config.json. It returns the warnings for
// what it let through (unknown keys under opts.AllowUnknownKeys, a
// runtime_config it dropped). Errors name the key and wrap lora.ErrBadInput
// (malformed or wrongly typed) or lora.ErrNotImplemented (a PEFT feature
// this package does not support).
func ParseConfig(data []byte, opts Options) (*Config, []string, error) {
	c, warn, err := parseConfig(data, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("peft: %s: %w", ConfigName, err)
	}
	return c, warn, nil
}

func parseConfig(data []byte, opts Options) (*Config, []string, error) {
	v, err := parseJSON(data)
	if err != nil {
		return nil, nil, fmt.Errorf("not a valid JSON config: %v: %w", err, lora.ErrBadInput)
	}
	obj, ok := v.(object)
	if !ok {
		return nil, nil, fmt.Errorf("the config is %s, want a JSON object: %w", describe(v), lora.ErrBadInput)
	}
	c := DefaultConfig()
	var warnings, unknown []string
	sawType := false
	for _, m := range obj {
		sawType = sawType || m.Key == "peft_type"
		spec, known := configKeys[m.Key]
		switch {
		case !known && opts.AllowUnknownKeys:
			if c.Unknown == nil {
				c.Unknown = map[string]json.RawMessage{}
			}
			c.Unknown[m.Key] = compactJSON(m.Value)
			warnings = append(warnings, fmt.Sprintf("unknown key %q is kept but not applied", m.Key))
		case !known:
			unknown = append(unknown, strconv.Quote(m.Key))
		case spec.kind == typed:
			if err := c.setTyped(m.Key, m.Value); err != nil {
				return nil, nil, err
			}
		case spec.kind == dropped:
			warnings = append(warnings, fmt.Sprintf("key %q is runtime-only and ignored, as PEFT ignores it", m.Key))
		default:
			c.Kept[m.Key] = compactJSON(m.Value)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		what := "key " + unknown[0]
		if len(unknown) > 1 {
			what = "keys " + strings.Join(unknown, ", ")
		}
		return nil, nil, fmt.Errorf("unknown %s (a newer PEFT's? Options.AllowUnknownKeys loads it with a warning): %w",
			what, lora.ErrNotImplemented)
	}
	if !sawType {
		return nil, nil, fmt.Errorf(`key "peft_type" is missing (PEFT requires it): %w`, lora.ErrBadInput)
	}
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	return &c, warnings, nil
}

// setTyped decodes one typed key into c, checking its JSON type.
func (c *Config) setTyped(key string, v any) error {
	var err error
	switch key {
	case "peft_type":
		c.PeftType, err = asString(key, v, false)
	case "task_type":
		c.TaskType, err = asString(key, v, true)
	case "base_model_name_or_path":
		c.BaseModelNameOrPath, err = asString(key, v, true)
	case "revision":
		c.Revision, err = asString(key, v, true)
	case "inference_mode":
		c.InferenceMode, err = asBool(key, v)
	case "r":
		c.R, err = asInt(key, v)
	case "lora_alpha":
		c.LoRAAlpha, err = asFloat(key, v)
	case "use_rslora":
		c.UseRSLoRA, err = asBool(key, v)
	case "lora_dropout":
		c.LoRADropout, err = asFloat(key, v)
	case "bias":
		c.Bias, err = asString(key, v, false)
	case "use_dora":
		c.UseDoRA, err = asBool(key, v)
	case "lora_bias":
		c.LoRABias, err = asBool(key, v)
	case "fan_in_fan_out":
		c.FanInFanOut, err = asBool(key, v)
	case "init_lora_weights":
		switch t := v.(type) {
		case bool:
			c.InitLoRAWeights = InitWeights{Bool: t}
		case string:
			c.InitLoRAWeights = InitWeights{Name: t}
		default:
			err = typeError(key, v, "true, false or the name of an initialisation")
		}
	case "target_modules":
		c.TargetModules, err = asModuleSet(key, v)
	case "exclude_modules":
		c.ExcludeModules, err = asModuleSet(key, v)
	case "layers_to_transform":
		c.LayersToTransform, err = asLayers(key, v)
	case "layers_pattern":
		c.LayersPattern, err = asStrings(key, v)
	case "rank_pattern":
		c.RankPattern, err = asRankPattern(key, v)
	case "alpha_pattern":
		c.AlphaPattern, err = asAlphaPattern(key, v)
	default:
		panic("peft: setTyped: " + key) // configKeys and this switch list the same keys
	}
	return err
}

// describe names a JSON value for an error, shortened.
func describe(v any) string {
	s := string(compactJSON(v))
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

func typeError(key string, v any, want string) error {
	return fmt.Errorf("key %q is %s, want %s: %w", key, describe(v), want, lora.ErrBadInput)
}

func asString(key string, v any, nullable bool) (string, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	if v == nil && nullable {
		return "", nil
	}
	if nullable {
		return "", typeError(key, v, "a string or null")
	}
	return "", typeError(key, v, "a string")
}

func asBool(key string, v any) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, typeError(key, v, "true or false")
	}
	return b, nil
}

// asInt accepts an integer literal only: Python reads 8.0 as a float,
// which PEFT cannot use as a rank.
func asInt(key string, v any) (int, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, typeError(key, v, "an integer")
	}
	i, err := strconv.ParseInt(string(n), 10, 32)
	if err != nil {
		return 0, typeError(key, v, "an integer of at most 32 bits")
	}
	return int(i), nil
}

func asFloat(key string, v any) (float64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, typeError(key, v, "a number")
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, typeError(key, v, "a finite number")
	}
	return f, nil
}

// asStrings reads null, one string (a list of one) or a list of strings.
func asStrings(key string, v any) ([]string, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case string:
		if t == "" {
			return []string{}, nil // empty in PEFT's len() test, like []
		}
		return []string{t}, nil
	case []any:
		out := make([]string, 0, len(t))
		for _, x := range t {
			s, ok := x.(string)
			if !ok {
				return nil, typeError(key, v, "null, a string or a list of strings")
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, typeError(key, v, "null, a string or a list of strings")
}

func asModuleSet(key string, v any) (*ModuleSet, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case string:
		return &ModuleSet{IsRegex: true, Regex: t}, nil
	case []any:
		names, err := asStrings(key, t)
		if err != nil {
			return nil, err
		}
		return &ModuleSet{Names: names}, nil
	}
	return nil, typeError(key, v, "null, a regular expression or a list of module names")
}

func asLayers(key string, v any) ([]int, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case json.Number:
		i, err := asInt(key, t)
		return []int{i}, err
	case []any:
		out := make([]int, 0, len(t))
		for _, x := range t {
			i, err := asInt(key, x)
			if err != nil {
				return nil, typeError(key, v, "null, an integer or a list of integers")
			}
			out = append(out, i)
		}
		return out, nil
	}
	return nil, typeError(key, v, "null, an integer or a list of integers")
}

func asRankPattern(key string, v any) ([]RankPattern, error) {
	obj, ok := v.(object)
	if !ok {
		return nil, typeError(key, v, "an object of module pattern to rank")
	}
	var out []RankPattern // nil when empty, like DefaultConfig's
	for _, m := range obj {
		r, err := asInt(fmt.Sprintf("%s[%q]", key, m.Key), m.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, RankPattern{m.Key, r})
	}
	return out, nil
}

func asAlphaPattern(key string, v any) ([]AlphaPattern, error) {
	obj, ok := v.(object)
	if !ok {
		return nil, typeError(key, v, "an object of module pattern to alpha")
	}
	var out []AlphaPattern
	for _, m := range obj {
		a, err := asFloat(fmt.Sprintf("%s[%q]", key, m.Key), m.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, AlphaPattern{m.Key, a})
	}
	return out, nil
}
