package main

import (
	"fmt"
	"os"
	"slices"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/hf/hftest"
)

// preset is the decoder-layer shape -make-model writes, and the tokens per
// step it trains with by default.
type preset struct {
	name   string
	spec   hftest.Spec // sizes and family; Layers, DType and Seed come from the flags
	tokens int
}

// presets are tiny (the lavapipe default) and the layer shapes of
// lorabench's presets (cmd/lorabench/layers.go, scripts/gpu/torch_reference.py),
// with their model families: Qwen2 has q, k and v biases, Gemma tanh GELU.
var presets = []preset{
	{"tiny", hftest.Spec{ModelType: "llama", Hidden: 32, Intermediate: 64, Heads: 4, KVHeads: 2, HiddenAct: "silu"}, 64},
	{"llama3-8b", hftest.Spec{ModelType: "llama", Hidden: 4096, Intermediate: 14336, Heads: 32, KVHeads: 8, HeadDim: 128, HiddenAct: "silu"}, 8192},
	{"gemma-2b", hftest.Spec{ModelType: "gemma", Hidden: 2048, Intermediate: 16384, Heads: 8, KVHeads: 1, HeadDim: 256, HiddenAct: "gelu_pytorch_tanh"}, 8192},
	{"qwen2.5-0.5b", hftest.Spec{ModelType: "qwen2", Hidden: 896, Intermediate: 4864, Heads: 14, KVHeads: 2, HeadDim: 64, HiddenAct: "silu"}, 4096},
}

func presetNames() []string {
	var ns []string
	for _, p := range presets {
		ns = append(ns, p.name)
	}
	return ns
}

func findPreset(name string) (preset, bool) {
	i := slices.IndexFunc(presets, func(p preset) bool { return p.name == name })
	if i < 0 {
		return preset{}, false
	}
	return presets[i], true
}

// makeModel writes a random checkpoint of preset p with the given layers
// into dir (created if needed) with the repository's own writer
// (hf/hftest): config.json and model.safetensors, weights N(0, 1/in), as
// transformers' save_pretrained lays them out. d 0 stores bf16.
func makeModel(dir string, p preset, layers int, d dtype.DType, seed uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	s := p.spec
	s.Layers, s.DType, s.Seed = layers, d, seed
	if s.DType == 0 {
		s.DType = dtype.BF16
	}
	if _, err := hftest.Write(dir, s); err != nil {
		return fmt.Errorf("-make-model %s: %w", dir, err)
	}
	return nil
}
