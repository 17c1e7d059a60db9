package peft

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
)

// MarshalConfig writes c as PEFT's save_pretrained does:
// json.dumps(indent=2, sort_keys=True), every key LoraConfig writes, no
// trailing newline. rank_pattern and alpha_pattern keep Config's order,
// which is the order PEFT tries them in when it loads the file (a config
// PEFT wrote has them sorted already). It validates c first.
func MarshalConfig(c *Config) ([]byte, error) {
	if c == nil {
		return nil, fmt.Errorf("peft: MarshalConfig: config is nil")
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("peft: MarshalConfig: %w", err)
	}
	obj := object{
		{"peft_type", c.PeftType},
		{"task_type", nullable(c.TaskType)},
		{"base_model_name_or_path", nullable(c.BaseModelNameOrPath)},
		{"revision", nullable(c.Revision)},
		{"inference_mode", c.InferenceMode},
		{"r", json.Number(strconv.Itoa(c.R))},
		{"lora_alpha", pyNumber(c.LoRAAlpha)},
		{"use_rslora", c.UseRSLoRA},
		{"lora_dropout", pyFloat(c.LoRADropout)},
		{"bias", c.Bias},
		{"use_dora", c.UseDoRA},
		{"lora_bias", c.LoRABias},
		{"fan_in_fan_out", c.FanInFanOut},
		{"init_lora_weights", c.InitLoRAWeights.value()},
		{"target_modules", c.TargetModules.value()},
		{"exclude_modules", c.ExcludeModules.value()},
		{"layers_to_transform", intsValue(c.LayersToTransform)},
		{"layers_pattern", stringsValue(c.LayersPattern)},
		{"rank_pattern", rankValue(c.RankPattern)},
		{"alpha_pattern", alphaValue(c.AlphaPattern)},
	}
	kept := map[string]json.RawMessage{}
	for k, v := range keptDefaults {
		kept[k] = json.RawMessage(v)
	}
	for k, v := range c.Kept {
		kept[k] = v
	}
	for _, raws := range []map[string]json.RawMessage{kept, c.Unknown} {
		for k, raw := range raws {
			v, err := parseJSON(raw) // Validate checked it parses
			if err != nil {
				return nil, fmt.Errorf("peft: MarshalConfig: key %q: %v", k, err)
			}
			obj = append(obj, member{k, v})
		}
	}
	sort.Slice(obj, func(i, j int) bool { return obj[i].Key < obj[j].Key })
	var b bytes.Buffer
	writePy(&b, obj, 0)
	return b.Bytes(), nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (w InitWeights) value() any {
	if w.Name != "" {
		return w.Name
	}
	return w.Bool
}

func (s *ModuleSet) value() any {
	switch {
	case s == nil:
		return nil
	case s.IsRegex:
		return s.Regex
	}
	return stringsValue(s.Names)
}

func stringsValue(xs []string) any {
	if xs == nil {
		return nil
	}
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}

func intsValue(xs []int) any {
	if xs == nil {
		return nil
	}
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = json.Number(strconv.Itoa(x))
	}
	return out
}

func rankValue(ps []RankPattern) object {
	out := object{}
	for _, p := range ps {
		out = append(out, member{p.Key, json.Number(strconv.Itoa(p.R))})
	}
	return out
}

func alphaValue(ps []AlphaPattern) object {
	out := object{}
	for _, p := range ps {
		out = append(out, member{p.Key, pyNumber(p.Alpha)})
	}
	return out
}
