package peft

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/safetensors"
)

// Save writes a to dir (created if needed) as PEFT's save_pretrained does,
// so that PeftModel.from_pretrained loads it unchanged: adapter_config.json
// (MarshalConfig) and adapter_model.safetensors with PEFT's key names,
// each tensor in its own dtype, metadata {"format": "pt"}. It validates a
// first (Adapter.Validate). Each file replaces the old one only once it is
// completely written.
func Save(dir string, a *Adapter) error {
	if err := save(dir, a); err != nil {
		return fmt.Errorf("peft: Save %s: %w", dir, err)
	}
	return nil
}

func save(dir string, a *Adapter) error {
	if err := a.Validate(); err != nil {
		return err
	}
	cfg, err := MarshalConfig(&a.Config)
	if err != nil {
		return err
	}
	f, err := a.safetensors()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := safetensors.WriteFile(filepath.Join(dir, WeightsName), f); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, ConfigName), cfg)
}

// safetensors lays out a's tensors under PEFT's keys.
func (a *Adapter) safetensors() (*safetensors.File, error) {
	f := safetensors.New()
	f.Metadata["format"] = "pt" // what PEFT passes to safetensors' save_file
	put := func(key string, t *Tensor) error {
		if t == nil {
			return nil
		}
		if _, dup := f.Tensors[key]; dup {
			return fmt.Errorf("two tensors would be saved as %q: %w", key, lora.ErrBadInput)
		}
		name, err := safetensors.FromDType(t.DType)
		if err != nil {
			return fmt.Errorf("tensor %q: %v: %w", key, err, lora.ErrBadInput)
		}
		return f.Put(key, name, slices.Clone(t.Shape), encodeExact(t.DType, t.Data))
	}
	for _, p := range a.Paths() {
		m, base := a.Modules[p], keyPrefix+p
		for _, x := range []struct {
			suffix string
			t      *Tensor
		}{{suffixA, m.A}, {suffixB, m.B}, {suffixLoRABias, m.LoRABias}, {suffixMagnitude, m.Magnitude}, {suffixBaseBias, m.BaseBias}} {
			if err := put(base+x.suffix, x.t); err != nil {
				return nil, err
			}
		}
	}
	for _, p := range slices.Sorted(maps.Keys(a.OtherBiases)) {
		if err := put(keyPrefix+p+suffixBias, a.OtherBiases[p]); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so an interrupted save never leaves half a config.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
