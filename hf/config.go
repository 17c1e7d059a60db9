package hf

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
)

// ConfigFile is the name of the model config in a checkpoint directory.
const ConfigFile = "config.json"

// Config is what the engine needs from a model's config.json, with
// transformers' defaults filled in for the fields a file leaves out.
type Config struct {
	ModelType         string // llama, qwen2, gemma, gemma2 or mistral
	HiddenSize        int
	IntermediateSize  int
	NumAttentionHeads int
	NumKeyValueHeads  int // num_key_value_heads, default NumAttentionHeads
	// HeadDim is head_dim, default HiddenSize/NumAttentionHeads (256 for
	// Gemma, as GemmaConfig has it: Gemma 7B has 16 heads of 256 on a
	// hidden size of 3072).
	HeadDim         int
	NumHiddenLayers int
	VocabSize       int // 0 when absent
	// HiddenAct is the gate activation's name as transformers resolves it
	// (hidden_act; for Gemma hidden_activation, else gelu_pytorch_tanh,
	// since transformers ignores Gemma's hidden_act), and Activation the
	// engine's form of it.
	HiddenAct  string
	Activation lora.Activation
	// TorchDType is torch_dtype (or dtype, its newer name) as written, ""
	// when absent; DType is it as an engine dtype, 0 unless it is float32,
	// float16 or bfloat16.
	TorchDType        string
	DType             dtype.DType
	TieWordEmbeddings bool
	// The base biases each projection has. They follow the architecture as
	// transformers builds it: Llama and Gemma give q, k, v and o a bias
	// when attention_bias is set, Llama gives the MLP one when mlp_bias is,
	// Qwen2 always has q, k and v biases and never others, Mistral none.
	QKVBias, OBias, MLPBias bool
	RMSNormEps              float64 // 0 when absent
	RopeTheta               float64 // 0 when absent
	// Quantization is quantization_config.quant_method ("" when absent);
	// only "bitsandbytes" 4-bit NF4 is accepted.
	Quantization string
}

// supported lists the model_type values ReadConfig accepts, sorted.
var supported = []string{"gemma", "gemma2", "llama", "mistral", "qwen2"}

// SupportedModelTypes lists the model_type values ReadConfig accepts.
func SupportedModelTypes() []string { return append([]string(nil), supported...) }

// rawConfig mirrors the fields read from config.json; pointers tell a
// missing (or null) field from a zero one.
type rawConfig struct {
	ModelType         *string   `json:"model_type"`
	HiddenSize        *int      `json:"hidden_size"`
	IntermediateSize  *int      `json:"intermediate_size"`
	NumAttentionHeads *int      `json:"num_attention_heads"`
	NumKeyValueHeads  *int      `json:"num_key_value_heads"`
	HeadDim           *int      `json:"head_dim"`
	NumHiddenLayers   *int      `json:"num_hidden_layers"`
	VocabSize         *int      `json:"vocab_size"`
	HiddenAct         *string   `json:"hidden_act"`
	HiddenActivation  *string   `json:"hidden_activation"`
	TorchDType        *string   `json:"torch_dtype"`
	DType             *string   `json:"dtype"`
	TieWordEmbeddings *bool     `json:"tie_word_embeddings"`
	AttentionBias     *bool     `json:"attention_bias"`
	MLPBias           *bool     `json:"mlp_bias"`
	RMSNormEps        *float64  `json:"rms_norm_eps"`
	RopeTheta         *float64  `json:"rope_theta"`
	Quantization      *rawQuant `json:"quantization_config"`
}

type rawQuant struct {
	QuantMethod *string `json:"quant_method"`
	LoadIn8bit  *bool   `json:"load_in_8bit"`
	QuantType   *string `json:"bnb_4bit_quant_type"`
}

// Bounds far beyond any released model (Llama 3.1 405B: hidden 16384,
// intermediate 53248, 126 layers; Gemma's vocabulary 256000) that keep
// every shape product inside int and refuse a corrupt config early.
const (
	maxWidth  = 1 << 20
	maxVocab  = 1 << 24
	maxHeads  = 1 << 14
	maxLayers = 1 << 14
)

// ReadConfig reads and validates dir/config.json.
func ReadConfig(dir string) (*Config, error) {
	path := filepath.Join(dir, ConfigFile)
	b, err := readSmallFile(path, maxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("hf: ReadConfig: %w", err)
	}
	c, err := parseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("hf: %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses and validates the contents of a config.json. Errors
// name the field and wrap ErrBadCheckpoint, or ErrUnsupported for a
// model_type or quantization this package does not load.
func ParseConfig(b []byte) (*Config, error) {
	c, err := parseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("hf: config: %w", err)
	}
	return c, nil
}

func parseConfig(b []byte) (*Config, error) {
	var r rawConfig
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrBadCheckpoint)
	}
	return r.config()
}

func (r *rawConfig) config() (*Config, error) {
	if r.ModelType == nil {
		return nil, fmt.Errorf("model_type is missing: %w", ErrBadCheckpoint)
	}
	c := &Config{ModelType: *r.ModelType}
	i := sort.SearchStrings(supported, c.ModelType)
	if i == len(supported) || supported[i] != c.ModelType {
		return nil, fmt.Errorf("model_type %q is not supported (supported: %s): %w", c.ModelType, strings.Join(supported, ", "), ErrUnsupported)
	}
	gemma := c.ModelType == "gemma" || c.ModelType == "gemma2"
	var err error
	for _, f := range []struct {
		name string
		v    *int
		dst  *int
		max  int
	}{
		{"hidden_size", r.HiddenSize, &c.HiddenSize, maxWidth},
		{"intermediate_size", r.IntermediateSize, &c.IntermediateSize, maxWidth},
		{"num_attention_heads", r.NumAttentionHeads, &c.NumAttentionHeads, maxHeads},
		{"num_hidden_layers", r.NumHiddenLayers, &c.NumHiddenLayers, maxLayers},
	} {
		if *f.dst, err = size(f.name, f.v, f.max); err != nil {
			return nil, err
		}
	}
	c.NumKeyValueHeads = c.NumAttentionHeads
	if r.NumKeyValueHeads != nil {
		if c.NumKeyValueHeads, err = size("num_key_value_heads", r.NumKeyValueHeads, maxHeads); err != nil {
			return nil, err
		}
	}
	if c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		return nil, fmt.Errorf("num_attention_heads %d is not a multiple of num_key_value_heads %d: %w", c.NumAttentionHeads, c.NumKeyValueHeads, ErrBadCheckpoint)
	}
	switch {
	case r.HeadDim != nil:
		if c.HeadDim, err = size("head_dim", r.HeadDim, maxWidth); err != nil {
			return nil, err
		}
	case gemma:
		c.HeadDim = 256
	case c.HiddenSize%c.NumAttentionHeads != 0:
		return nil, fmt.Errorf("hidden_size %d is not a multiple of num_attention_heads %d, and head_dim is not given: %w", c.HiddenSize, c.NumAttentionHeads, ErrBadCheckpoint)
	default:
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	if q := c.NumAttentionHeads * c.HeadDim; q > maxWidth {
		return nil, fmt.Errorf("num_attention_heads %d × head_dim %d = %d exceeds %d: %w", c.NumAttentionHeads, c.HeadDim, q, maxWidth, ErrBadCheckpoint)
	}
	if r.VocabSize != nil {
		if c.VocabSize, err = size("vocab_size", r.VocabSize, maxVocab); err != nil {
			return nil, err
		}
	}
	if err := c.activation(r, gemma); err != nil {
		return nil, err
	}
	c.dtype(r)
	c.TieWordEmbeddings = gemma // GemmaConfig defaults to tied embeddings, the others to untied
	if r.TieWordEmbeddings != nil {
		c.TieWordEmbeddings = *r.TieWordEmbeddings
	}
	attnBias := r.AttentionBias != nil && *r.AttentionBias
	switch c.ModelType {
	case "llama":
		c.QKVBias, c.OBias = attnBias, attnBias
		c.MLPBias = r.MLPBias != nil && *r.MLPBias
	case "gemma", "gemma2":
		c.QKVBias, c.OBias = attnBias, attnBias
	case "qwen2":
		c.QKVBias = true
	}
	for _, f := range []struct {
		name string
		v    *float64
		dst  *float64
	}{{"rms_norm_eps", r.RMSNormEps, &c.RMSNormEps}, {"rope_theta", r.RopeTheta, &c.RopeTheta}} {
		if f.v == nil {
			continue
		}
		if !(*f.v > 0) || math.IsInf(*f.v, 0) {
			return nil, fmt.Errorf("%s = %v must be positive and finite: %w", f.name, *f.v, ErrBadCheckpoint)
		}
		*f.dst = *f.v
	}
	return c, c.quantization(r.Quantization)
}

// size checks one positive integer field.
func size(name string, v *int, limit int) (int, error) {
	switch {
	case v == nil:
		return 0, fmt.Errorf("%s is missing: %w", name, ErrBadCheckpoint)
	case *v < 1:
		return 0, fmt.Errorf("%s = %d must be positive: %w", name, *v, ErrBadCheckpoint)
	case *v > limit:
		return 0, fmt.Errorf("%s = %d exceeds %d: %w", name, *v, limit, ErrBadCheckpoint)
	}
	return *v, nil
}

// activation resolves the gate activation as transformers does. Gemma's MLP
// reads hidden_activation and, when it is unset, uses gelu_pytorch_tanh
// whatever hidden_act says (the first Gemma configs wrote "gelu" there,
// which is the erf form: taking it would silently change the model).
func (c *Config) activation(r *rawConfig, gemma bool) error {
	field := "hidden_act"
	switch {
	case gemma && r.HiddenActivation != nil:
		field, c.HiddenAct = "hidden_activation", *r.HiddenActivation
	case gemma:
		c.HiddenAct = "gelu_pytorch_tanh"
	case r.HiddenAct != nil:
		c.HiddenAct = *r.HiddenAct
	default:
		c.HiddenAct = "silu" // the default of LlamaConfig, Qwen2Config and MistralConfig
	}
	act, err := lora.ActivationFromHiddenAct(c.HiddenAct)
	if err != nil {
		return fmt.Errorf("%s: %v: %w", field, err, ErrUnsupported)
	}
	c.Activation = act
	return nil
}

// dtype records torch_dtype, or dtype (its name since transformers 4.56).
func (c *Config) dtype(r *rawConfig) {
	switch {
	case r.TorchDType != nil:
		c.TorchDType = *r.TorchDType
	case r.DType != nil:
		c.TorchDType = *r.DType
	default:
		return
	}
	switch c.TorchDType {
	case "float32", "float16", "bfloat16":
		c.DType, _ = dtype.Parse(c.TorchDType)
	}
}

// quantization accepts no quantization_config, or bitsandbytes in 4-bit NF4
// (whose tensors quant.LoadNF4 reads); the rest would load as garbage.
func (c *Config) quantization(q *rawQuant) error {
	if q == nil {
		return nil
	}
	if q.QuantMethod == nil {
		return fmt.Errorf("quantization_config has no quant_method: %w", ErrBadCheckpoint)
	}
	c.Quantization = *q.QuantMethod
	switch {
	case c.Quantization != "bitsandbytes":
		return fmt.Errorf("quantization_config.quant_method %q is not supported (only bitsandbytes NF4): %w", c.Quantization, ErrUnsupported)
	case q.LoadIn8bit != nil && *q.LoadIn8bit:
		return fmt.Errorf("quantization_config.load_in_8bit: 8-bit bitsandbytes (LLM.int8) is not supported, only 4-bit NF4: %w", ErrUnsupported)
	case q.QuantType != nil && *q.QuantType != "nf4":
		return fmt.Errorf("quantization_config.bnb_4bit_quant_type %q is not supported, only nf4: %w", *q.QuantType, ErrUnsupported)
	}
	return nil
}
