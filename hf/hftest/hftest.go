// Package hftest writes tiny Hugging Face checkpoint directories
// (config.json, model.safetensors or shards with their index) with the
// repository's own safetensors writer, for tests and examples. It names
// tensors and lays them out on its own, not through package hf, so that a
// mapping mistake in hf cannot hide behind the same mistake here.
package hftest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/safetensors"
)

// Spec describes a checkpoint to write. Zero fields take the defaults
// given; sizes are tiny so that a test writes and loads one in
// milliseconds.
type Spec struct {
	ModelType    string // default "llama"
	Hidden       int    // default 16
	Intermediate int    // default 24
	Heads        int    // default 4
	KVHeads      int    // default Heads; written only when set
	HeadDim      int    // written only when set; else Gemma's 256 or Hidden/Heads
	Layers       int    // default 2
	Vocab        int    // default 32
	HiddenAct    string // written as hidden_act (hidden_activation for Gemma) when set
	// DType is the stored dtype of every float tensor and the config's
	// torch_dtype; default BF16.
	DType dtype.DType
	// AttentionBias and MLPBias are written to config.json; biases are
	// written for the projections the architecture gives one (see
	// HasBias).
	AttentionBias, MLPBias bool
	// Shards > 1 writes that many model-0000i-of-0000n.safetensors files
	// and model.safetensors.index.json; otherwise one model.safetensors.
	Shards int
	// NF4 lists the projections ("q_proj", "down_proj", …) stored as
	// bitsandbytes NF4 in every layer, with NF4Blocksize (default 64) and
	// double quantization when DoubleQuant.
	NF4          []string
	NF4Blocksize int
	DoubleQuant  bool
	// Config overrides or adds config.json fields after the generated ones;
	// a nil value deletes the field.
	Config map[string]any
	Seed   uint64
}

// Model is what Write wrote.
type Model struct {
	Dir    string
	Spec   Spec // with the defaults filled in
	Files  []string
	Where  map[string]string    // tensor name → file name
	Shapes map[string][]int     // every tensor's shape as stored
	Values map[string][]float32 // every float tensor's values (exactly as stored)
	NF4    map[string]*quant.NF4Weight
}

// Projections lists the seven projection names with their block.
var Projections = []struct{ Block, Name string }{
	{"self_attn", "q_proj"}, {"self_attn", "k_proj"}, {"self_attn", "v_proj"}, {"self_attn", "o_proj"},
	{"mlp", "gate_proj"}, {"mlp", "up_proj"}, {"mlp", "down_proj"},
}

// ProjPrefix is the checkpoint name of projection name of layer i, without
// ".weight" (a name not in Projections gets the block "unknown").
func ProjPrefix(i int, name string) string {
	block := "unknown"
	for _, p := range Projections {
		if p.Name == name {
			block = p.Block
		}
	}
	return fmt.Sprintf("model.layers.%d.%s.%s", i, block, name)
}

func (s *Spec) defaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if s.ModelType == "" {
		s.ModelType = "llama"
	}
	def(&s.Hidden, 16)
	def(&s.Intermediate, 24)
	def(&s.Heads, 4)
	def(&s.Layers, 2)
	def(&s.Vocab, 32)
	def(&s.NF4Blocksize, quant.DefaultBlocksize)
	if s.DType == 0 {
		s.DType = dtype.BF16
	}
}

func (s *Spec) gemma() bool { return s.ModelType == "gemma" || s.ModelType == "gemma2" }

func (s *Spec) headDim() int {
	switch {
	case s.HeadDim != 0:
		return s.HeadDim
	case s.gemma():
		return 256
	}
	return s.Hidden / s.Heads
}

func (s *Spec) kvHeads() int {
	if s.KVHeads != 0 {
		return s.KVHeads
	}
	return s.Heads
}

// Shape is projection name's [out, in].
func (s *Spec) Shape(name string) (out, in int) {
	q, kv := s.Heads*s.headDim(), s.kvHeads()*s.headDim()
	switch name {
	case "q_proj":
		return q, s.Hidden
	case "k_proj", "v_proj":
		return kv, s.Hidden
	case "o_proj":
		return s.Hidden, q
	case "gate_proj", "up_proj":
		return s.Intermediate, s.Hidden
	}
	return s.Hidden, s.Intermediate
}

// HasBias reports whether projection name has a base bias in the
// architecture, as transformers builds it.
func (s *Spec) HasBias(name string) bool {
	attn := name == "q_proj" || name == "k_proj" || name == "v_proj" || name == "o_proj"
	switch s.ModelType {
	case "qwen2":
		return attn && name != "o_proj"
	case "llama":
		return (attn && s.AttentionBias) || (!attn && s.MLPBias)
	case "gemma", "gemma2":
		return attn && s.AttentionBias
	}
	return false
}

var torchDType = map[dtype.DType]string{dtype.F32: "float32", dtype.F16: "float16", dtype.BF16: "bfloat16"}

func (s *Spec) config() map[string]any {
	cfg := map[string]any{
		"architectures":       []string{"X"},
		"model_type":          s.ModelType,
		"hidden_size":         s.Hidden,
		"intermediate_size":   s.Intermediate,
		"num_attention_heads": s.Heads,
		"num_hidden_layers":   s.Layers,
		"vocab_size":          s.Vocab,
		"rms_norm_eps":        1e-6,
		"rope_theta":          10000.0,
		"torch_dtype":         torchDType[s.DType],
	}
	if s.KVHeads != 0 {
		cfg["num_key_value_heads"] = s.KVHeads
	}
	if s.HeadDim != 0 {
		cfg["head_dim"] = s.HeadDim
	}
	if s.HiddenAct != "" {
		if s.gemma() {
			cfg["hidden_activation"] = s.HiddenAct
		} else {
			cfg["hidden_act"] = s.HiddenAct
		}
	}
	if s.AttentionBias {
		cfg["attention_bias"] = true
	}
	if s.MLPBias {
		cfg["mlp_bias"] = true
	}
	if len(s.NF4) > 0 {
		cfg["quantization_config"] = map[string]any{"quant_method": "bitsandbytes", "load_in_4bit": true, "bnb_4bit_quant_type": "nf4"}
	}
	for k, v := range s.Config {
		if v == nil {
			delete(cfg, k)
		} else {
			cfg[k] = v
		}
	}
	return cfg
}

// Write writes the checkpoint of s into dir (which must exist).
func Write(dir string, s Spec) (*Model, error) {
	s.defaults()
	m := &Model{Dir: dir, Spec: s, Where: map[string]string{}, Shapes: map[string][]int{},
		Values: map[string][]float32{}, NF4: map[string]*quant.NF4Weight{}}
	all := safetensors.New()
	rng := rand.New(rand.NewPCG(s.Seed, 0x4846))
	put := func(name string, scale float64, shape ...int) error {
		n := 1
		for _, d := range shape {
			n *= d
		}
		xs := make([]float32, n)
		for i := range xs {
			xs[i] = dtype.Round(s.DType, float32(rng.NormFloat64()*scale))
		}
		m.Values[name], m.Shapes[name] = xs, shape
		return all.PutFloat32(name, s.DType, shape, xs)
	}
	var errs []error
	errs = append(errs, put("model.embed_tokens.weight", 1, s.Vocab, s.Hidden), put("model.norm.weight", 1, s.Hidden))
	tied := s.gemma() // GemmaConfig ties the embeddings by default, the others do not
	if v, ok := s.Config["tie_word_embeddings"].(bool); ok {
		tied = v
	}
	if !tied {
		errs = append(errs, put("lm_head.weight", 0.1, s.Vocab, s.Hidden))
	}
	for i := 0; i < s.Layers; i++ {
		norms := []string{"input_layernorm", "post_attention_layernorm"}
		if s.ModelType == "gemma2" {
			norms = append(norms, "pre_feedforward_layernorm", "post_feedforward_layernorm")
		}
		for _, n := range norms {
			errs = append(errs, put(fmt.Sprintf("model.layers.%d.%s.weight", i, n), 1, s.Hidden))
		}
		for _, p := range Projections {
			prefix := ProjPrefix(i, p.Name)
			out, in := s.Shape(p.Name)
			scale := 1 / math.Sqrt(float64(in))
			if slices.Contains(s.NF4, p.Name) {
				errs = append(errs, m.putNF4(all, rng, prefix, out, in, scale))
			} else {
				errs = append(errs, put(prefix+".weight", scale, out, in))
			}
			if s.HasBias(p.Name) {
				errs = append(errs, put(prefix+".bias", 0.5, out))
			}
		}
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	for n, t := range all.Tensors {
		if _, ok := m.Shapes[n]; !ok {
			m.Shapes[n] = t.Shape
		}
	}
	if err := m.writeFiles(all); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(s.config(), "", "  ")
	if err != nil {
		return nil, err
	}
	return m, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
}

func (m *Model) putNF4(all *safetensors.File, rng *rand.Rand, prefix string, out, in int, scale float64) error {
	xs := make([]float32, out*in)
	for i := range xs {
		xs[i] = float32(rng.NormFloat64() * scale)
	}
	w, err := quant.QuantizeNF4(xs, [2]int{out, in}, m.Spec.NF4Blocksize, m.Spec.DType, m.Spec.DoubleQuant)
	if err != nil {
		return err
	}
	m.NF4[prefix] = w
	return quant.SaveNF4(all, prefix, w)
}

// writeFiles splits the tensors, in name order, into Spec.Shards files of
// nearly equal count (so a layer, even one NF4 weight's tensors, may
// straddle two shards) and writes the index.
func (m *Model) writeFiles(all *safetensors.File) error {
	names := all.Names()
	n := max(m.Spec.Shards, 1)
	if n > len(names) {
		return fmt.Errorf("hftest: %d shards for %d tensors", n, len(names))
	}
	total := 0
	for k := 0; k < n; k++ {
		file := "model.safetensors"
		if n > 1 {
			file = fmt.Sprintf("model-%05d-of-%05d.safetensors", k+1, n)
		}
		f := safetensors.New()
		f.Metadata["format"] = "pt"
		for _, name := range names[k*len(names)/n : (k+1)*len(names)/n] {
			f.Tensors[name] = all.Tensors[name]
			m.Where[name] = file
			total += len(all.Tensors[name].Data)
		}
		if err := safetensors.WriteFile(filepath.Join(m.Dir, file), f); err != nil {
			return err
		}
		m.Files = append(m.Files, file)
	}
	sort.Strings(m.Files)
	if n == 1 {
		return nil
	}
	idx := map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": m.Where}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(m.Dir, "model.safetensors.index.json"), b, 0o644)
}

// WriteT is Write into a fresh temporary directory of t, failing t on error.
func WriteT(t testing.TB, s Spec) *Model {
	t.Helper()
	m, err := Write(t.TempDir(), s)
	if err != nil {
		t.Fatalf("hftest: %v", err)
	}
	return m
}

// Path is the path of file name in the checkpoint directory.
func (m *Model) Path(name string) string { return filepath.Join(m.Dir, name) }

// Index reads the written index (weight_map) back, for tests that corrupt it.
func (m *Model) Index() (map[string]string, error) {
	b, err := os.ReadFile(m.Path("model.safetensors.index.json"))
	if err != nil {
		return nil, err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	return idx.WeightMap, json.Unmarshal(b, &idx)
}

// WriteIndex replaces the index's weight_map with wm.
func (m *Model) WriteIndex(wm map[string]string) error {
	b, err := json.MarshalIndent(map[string]any{"metadata": map[string]any{}, "weight_map": wm}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(m.Path("model.safetensors.index.json"), b, 0o644)
}
