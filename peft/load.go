package peft

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vklora/vklora/internal/fsutil"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/safetensors"
)

// maxConfigSize bounds adapter_config.json. PEFT's are a few KB; a
// rank_pattern for every module of a large model stays far below this.
const maxConfigSize = 64 << 20

// keyPrefix starts every LoRA tensor key PEFT saves: the PeftModel's
// base_model (LoraModel) and its model (the transformers model).
const keyPrefix = "base_model.model."

// Parameter suffixes after the module path, as PEFT saves them (the
// adapter name removed). DoRA's magnitude is saved without ".weight";
// PEFT also loads it with, so Load accepts both and Save writes PEFT's.
const (
	suffixA         = ".lora_A.weight"
	suffixB         = ".lora_B.weight"
	suffixLoRABias  = ".lora_B.bias"
	suffixMagnitude = ".lora_magnitude_vector"
	suffixMagWeight = ".lora_magnitude_vector.weight"
	suffixBaseBias  = ".base_layer.bias"
	suffixBias      = ".bias"
)

// Load reads the PEFT LoRA adapter in dir (adapter_config.json and
// adapter_model.safetensors, as save_pretrained writes them). Config keys
// it does not know are an error; LoadWith can make them warnings. Errors
// name the file and the key or tensor, with the shapes involved, and wrap
// lora.ErrBadInput (malformed or inconsistent input) or
// lora.ErrNotImplemented (a PEFT feature this package does not support).
func Load(dir string) (*Adapter, error) {
	a, _, err := LoadWith(dir, Options{})
	return a, err
}

// LoadWith is Load with options; it also returns the warnings for what it
// let through.
func LoadWith(dir string, opts Options) (*Adapter, []string, error) {
	cfgPath := filepath.Join(dir, ConfigName)
	data, err := readBounded(cfgPath, maxConfigSize)
	if err != nil {
		return nil, nil, fmt.Errorf("peft: %w", err)
	}
	cfg, warnings, err := parseConfig(data, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("peft: %s: %w", cfgPath, err)
	}
	wPath := filepath.Join(dir, WeightsName)
	f, err := readSafetensors(wPath)
	if errors.Is(err, fs.ErrNotExist) {
		if _, binErr := os.Stat(filepath.Join(dir, "adapter_model.bin")); binErr == nil {
			// PEFT's safe_serialization=False: a torch pickle, which only Python can (safely) read.
			return nil, nil, fmt.Errorf("peft: %s: only adapter_model.bin, a torch pickle, is there; save with safe_serialization=True: %w",
				dir, lora.ErrNotImplemented)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("peft: %w", err)
	}
	a, err := fromTensors(cfg, f)
	if err != nil {
		return nil, nil, fmt.Errorf("peft: %s: %w", wPath, err)
	}
	return a, warnings, nil
}

// readBounded reads a regular file of at most limit bytes (fsutil.ReadSmall:
// no blocking on a FIFO, no device); a refusal is bad input.
func readBounded(path string, limit int64) ([]byte, error) {
	data, err := fsutil.ReadSmall(path, limit)
	if errors.Is(err, fsutil.ErrNotRegular) || errors.Is(err, fsutil.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %w", err, lora.ErrBadInput)
	}
	return data, err
}

// readSafetensors parses the weights with safetensors.Read, which checks
// the header before it allocates, so a truncated or corrupt file fails
// with an error instead of a huge allocation. The file is opened with
// fsutil.OpenRegular, so a FIFO or device named like it is refused, not
// read.
func readSafetensors(path string) (*safetensors.File, error) {
	fh, st, err := fsutil.OpenRegular(path)
	if errors.Is(err, fsutil.ErrNotRegular) {
		return nil, fmt.Errorf("%w: %w", err, lora.ErrBadInput)
	}
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	f, err := safetensors.Read(fh, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %v: %w", path, err, lora.ErrBadInput)
	}
	return f, nil
}

// role is what a tensor key holds for its module.
type role int

const (
	roleA role = iota
	roleB
	roleLoRABias
	roleMagnitude
	roleBaseBias
)

var roleNames = [...]string{"lora_A", "lora_B", "lora_B bias", "lora_magnitude_vector", "base_layer bias"}

// classify splits a saved key into its module path and role. Keys of other
// PEFT layers or of trained base modules are refused with what they are.
func classify(cfg *Config, key string) (path string, r role, other bool, err error) {
	rest, ok := strings.CutPrefix(key, keyPrefix)
	if !ok {
		return "", 0, false, fmt.Errorf("tensor %q does not start with %q, as every PEFT LoRA key does: %w", key, keyPrefix, lora.ErrBadInput)
	}
	for _, s := range []struct {
		suffix string
		role   role
	}{{suffixA, roleA}, {suffixB, roleB}, {suffixLoRABias, roleLoRABias}, {suffixMagnitude, roleMagnitude},
		{suffixMagWeight, roleMagnitude}, {suffixBaseBias, roleBaseBias}} {
		if p, ok := strings.CutSuffix(rest, s.suffix); ok && p != "" {
			return p, s.role, false, nil
		}
	}
	loraPart := slices.ContainsFunc(strings.Split(rest, "."), func(seg string) bool { return strings.HasPrefix(seg, "lora_") })
	switch {
	case strings.Contains(rest, ".lora_embedding_"):
		return "", 0, false, fmt.Errorf("tensor %q is a LoRA Embedding's, which is not implemented (Linear layers only): %w", key, lora.ErrNotImplemented)
	case loraPart:
		return "", 0, false, fmt.Errorf("tensor %q is not a parameter of a LoRA Linear (lora_A, lora_B, lora_magnitude_vector): %w", key, lora.ErrNotImplemented)
	case cfg.Bias == BiasAll && strings.HasSuffix(rest, suffixBias) && len(rest) > len(suffixBias):
		return strings.TrimSuffix(rest, suffixBias), 0, true, nil
	}
	return "", 0, false, fmt.Errorf("tensor %q is not part of a LoRA adapter (a module saved whole, e.g. modules_to_save or embeddings, is not supported): %w", key, lora.ErrNotImplemented)
}

// fromTensors builds the adapter from the parsed weights, checking every
// tensor against the config.
func fromTensors(cfg *Config, f *safetensors.File) (*Adapter, error) {
	a := &Adapter{Config: cfg.Clone(), Modules: map[string]*Module{}}
	keys := map[string]*[5]string{} // module path → key per role
	for _, key := range f.Names() {
		path, r, other, err := classify(cfg, key)
		if err != nil {
			return nil, err
		}
		if other {
			t, err := hostTensor(f, key)
			if err != nil {
				return nil, err
			}
			if a.OtherBiases == nil {
				a.OtherBiases = map[string]*Tensor{}
			}
			a.OtherBiases[path] = t
			continue
		}
		k := keys[path]
		if k == nil {
			k = new([5]string)
			keys[path] = k
		}
		if k[r] != "" {
			return nil, fmt.Errorf("tensors %q and %q are both the %s of module %s: %w", k[r], key, roleNames[r], path, lora.ErrBadInput)
		}
		k[r] = key
	}
	for _, path := range slices.Sorted(maps.Keys(keys)) {
		if _, clash := a.OtherBiases[path]; clash {
			return nil, fmt.Errorf("tensor %q is a bias of module %s, which has an adapter (its bias is saved as %q): %w",
				keyPrefix+path+suffixBias, path, keyPrefix+path+suffixBaseBias, lora.ErrBadInput)
		}
		m, err := loadModule(cfg, f, path, keys[path])
		if err != nil {
			return nil, err
		}
		a.Modules[path] = m
	}
	return a, nil
}

// loadModule reads one module's tensors and checks them as Validate does,
// with errors that name the keys.
func loadModule(cfg *Config, f *safetensors.File, path string, k *[5]string) (*Module, error) {
	m := &Module{Path: path}
	if k[roleA] == "" || k[roleB] == "" {
		have := slices.DeleteFunc(slices.Clone(k[:]), func(s string) bool { return s == "" })
		return nil, fmt.Errorf("module %s has %q but not both %q and %q: %w",
			path, have, keyPrefix+path+suffixA, keyPrefix+path+suffixB, lora.ErrBadInput)
	}
	if err := cfg.fillModule(m); err != nil {
		return nil, fmt.Errorf("tensor %q: %w", k[roleA], err)
	}
	var err error
	tensors := []**Tensor{&m.A, &m.B, &m.LoRABias, &m.Magnitude, &m.BaseBias}
	for r, key := range k {
		if key == "" {
			continue
		}
		if *tensors[r], err = hostTensor(f, key); err != nil {
			return nil, err
		}
	}
	_, _, rKey, _, _ := cfg.rankAlpha(path)
	rFrom := `"r"`
	if rKey != "" {
		rFrom = fmt.Sprintf("rank_pattern key %q", rKey)
	}
	if s := m.A.Shape; len(s) != 2 || s[0] != m.R {
		return nil, fmt.Errorf("tensor %q has shape %v, want [r=%d, in] (r from %s)%s: %w", k[roleA], s, m.R, rFrom, convHint(s), lora.ErrBadInput)
	}
	if s := m.B.Shape; len(s) != 2 || s[1] != m.R {
		return nil, fmt.Errorf("tensor %q has shape %v, want [out, r=%d] (r from %s)%s: %w", k[roleB], s, m.R, rFrom, convHint(s), lora.ErrBadInput)
	}
	out := m.B.Shape[0]
	for _, c := range []struct {
		r          role
		flag       bool
		flagName   string
		suffixWant string
	}{
		{roleLoRABias, cfg.LoRABias, `"lora_bias"`, suffixLoRABias},
		{roleMagnitude, cfg.UseDoRA, `"use_dora"`, suffixMagnitude},
		{roleBaseBias, cfg.Bias != BiasNone, `bias "all" or "lora_only"`, ""},
	} {
		t := *tensors[c.r]
		switch {
		case t == nil && c.flag && c.suffixWant != "":
			return nil, fmt.Errorf("module %s has no %q but the config has %s: %w", path, keyPrefix+path+c.suffixWant, c.flagName, lora.ErrBadInput)
		case t != nil && !c.flag:
			return nil, fmt.Errorf("tensor %q is present but the config does not have %s: %w", k[c.r], c.flagName, lora.ErrBadInput)
		case t != nil && (len(t.Shape) != 1 || t.Shape[0] != out):
			return nil, fmt.Errorf("tensor %q has shape %v, want [out=%d] (lora_B %v): %w", k[c.r], t.Shape, out, m.B.Shape, lora.ErrBadInput)
		}
	}
	return m, nil
}

// convHint explains a 4-D lora_A or lora_B: the layer is a Conv2d.
func convHint(shape []int) string {
	if len(shape) > 2 {
		return "; a LoRA Conv layer is not supported, Linear only"
	}
	return ""
}

// hostTensor reads a F32, F16 or BF16 tensor exactly.
func hostTensor(f *safetensors.File, key string) (*Tensor, error) {
	t, err := f.Get(key)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, lora.ErrBadInput)
	}
	d, err := safetensors.ToDType(t.DType)
	if err != nil || !d.IsFloat() {
		return nil, fmt.Errorf("tensor %q has dtype %s; only F32, F16 and BF16 are supported: %w", key, t.DType, lora.ErrNotImplemented)
	}
	if t.NumElements() == 0 {
		return nil, fmt.Errorf("tensor %q has shape %v with no elements: %w", key, t.Shape, lora.ErrBadInput)
	}
	return &Tensor{Shape: slices.Clone(t.Shape), DType: d, Data: decodeExact(d, t.Data)}, nil
}
