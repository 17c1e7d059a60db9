package hf

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
)

// Trimmed copies of the published config.json files (the fields read and a
// few that are not).
const (
	llama3_8B = `{"architectures":["LlamaForCausalLM"],"attention_bias":false,"bos_token_id":128000,
		"hidden_act":"silu","hidden_size":4096,"intermediate_size":14336,"max_position_embeddings":8192,
		"mlp_bias":false,"model_type":"llama","num_attention_heads":32,"num_hidden_layers":32,
		"num_key_value_heads":8,"pretraining_tp":1,"rms_norm_eps":1e-05,"rope_scaling":null,
		"rope_theta":500000.0,"tie_word_embeddings":false,"torch_dtype":"bfloat16","vocab_size":128256}`
	qwen2_7B = `{"architectures":["Qwen2ForCausalLM"],"hidden_act":"silu","hidden_size":3584,
		"intermediate_size":18944,"model_type":"qwen2","num_attention_heads":28,"num_hidden_layers":28,
		"num_key_value_heads":4,"rms_norm_eps":1e-06,"rope_theta":1000000.0,"sliding_window":131072,
		"tie_word_embeddings":false,"torch_dtype":"bfloat16","use_sliding_window":false,"vocab_size":152064}`
	// Gemma 7B as first published: hidden_act "gelu" (erf), which
	// transformers ignores for Gemma in favour of gelu_pytorch_tanh.
	gemma7B = `{"architectures":["GemmaForCausalLM"],"head_dim":256,"hidden_act":"gelu","hidden_size":3072,
		"intermediate_size":24576,"model_type":"gemma","num_attention_heads":16,"num_hidden_layers":28,
		"num_key_value_heads":16,"rms_norm_eps":1e-06,"rope_theta":10000.0,"torch_dtype":"bfloat16","vocab_size":256000}`
	gemma2_9B = `{"architectures":["Gemma2ForCausalLM"],"attn_logit_softcapping":50.0,"final_logit_softcapping":30.0,
		"head_dim":256,"hidden_act":"gelu_pytorch_tanh","hidden_activation":"gelu_pytorch_tanh","hidden_size":3584,
		"intermediate_size":14336,"model_type":"gemma2","num_attention_heads":16,"num_hidden_layers":42,
		"num_key_value_heads":8,"query_pre_attn_scalar":256,"rms_norm_eps":1e-06,"sliding_window":4096,
		"torch_dtype":"float32","vocab_size":256000}`
	mistralNemo = `{"architectures":["MistralForCausalLM"],"head_dim":128,"hidden_act":"silu","hidden_size":5120,
		"intermediate_size":14336,"model_type":"mistral","num_attention_heads":32,"num_hidden_layers":40,
		"num_key_value_heads":8,"rms_norm_eps":1e-05,"rope_theta":1000000.0,"sliding_window":null,
		"tie_word_embeddings":false,"dtype":"bfloat16","vocab_size":131072}`
)

func TestParseConfigFamilies(t *testing.T) {
	for _, c := range []struct {
		name, json string
		want       Config
	}{
		{"llama3-8b", llama3_8B, Config{ModelType: "llama", HiddenSize: 4096, IntermediateSize: 14336,
			NumAttentionHeads: 32, NumKeyValueHeads: 8, HeadDim: 128, NumHiddenLayers: 32, VocabSize: 128256,
			HiddenAct: "silu", Activation: lora.SwiGLU, TorchDType: "bfloat16", DType: dtype.BF16,
			RMSNormEps: 1e-5, RopeTheta: 500000}},
		{"qwen2-7b", qwen2_7B, Config{ModelType: "qwen2", HiddenSize: 3584, IntermediateSize: 18944,
			NumAttentionHeads: 28, NumKeyValueHeads: 4, HeadDim: 128, NumHiddenLayers: 28, VocabSize: 152064,
			HiddenAct: "silu", Activation: lora.SwiGLU, TorchDType: "bfloat16", DType: dtype.BF16,
			QKVBias: true, RMSNormEps: 1e-6, RopeTheta: 1e6}},
		{"gemma-7b", gemma7B, Config{ModelType: "gemma", HiddenSize: 3072, IntermediateSize: 24576,
			NumAttentionHeads: 16, NumKeyValueHeads: 16, HeadDim: 256, NumHiddenLayers: 28, VocabSize: 256000,
			HiddenAct: "gelu_pytorch_tanh", Activation: lora.GEGLUTanh, TorchDType: "bfloat16", DType: dtype.BF16,
			TieWordEmbeddings: true, RMSNormEps: 1e-6, RopeTheta: 10000}},
		{"gemma2-9b", gemma2_9B, Config{ModelType: "gemma2", HiddenSize: 3584, IntermediateSize: 14336,
			NumAttentionHeads: 16, NumKeyValueHeads: 8, HeadDim: 256, NumHiddenLayers: 42, VocabSize: 256000,
			HiddenAct: "gelu_pytorch_tanh", Activation: lora.GEGLUTanh, TorchDType: "float32", DType: dtype.F32,
			TieWordEmbeddings: true, RMSNormEps: 1e-6}},
		{"mistral-nemo", mistralNemo, Config{ModelType: "mistral", HiddenSize: 5120, IntermediateSize: 14336,
			NumAttentionHeads: 32, NumKeyValueHeads: 8, HeadDim: 128, NumHiddenLayers: 40, VocabSize: 131072,
			HiddenAct: "silu", Activation: lora.SwiGLU, TorchDType: "bfloat16", DType: dtype.BF16,
			RMSNormEps: 1e-5, RopeTheta: 1e6}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(c.json))
			require.NoError(t, err)
			require.Equal(t, c.want, *got)
		})
	}
}

// The defaults transformers' config classes give missing fields.
func TestParseConfigDefaults(t *testing.T) {
	base := `"hidden_size":64,"intermediate_size":96,"num_attention_heads":4,"num_hidden_layers":2`
	c, err := ParseConfig([]byte(`{"model_type":"llama",` + base + `}`))
	require.NoError(t, err)
	require.Equal(t, 4, c.NumKeyValueHeads, "kv heads default to heads")
	require.Equal(t, 16, c.HeadDim, "head_dim defaults to hidden/heads")
	require.Equal(t, "silu", c.HiddenAct)
	require.False(t, c.TieWordEmbeddings)
	require.Zero(t, c.DType)
	require.Zero(t, c.VocabSize)

	c, err = ParseConfig([]byte(`{"model_type":"llama","attention_bias":true,"mlp_bias":true,"num_key_value_heads":null,` + base + `}`))
	require.NoError(t, err)
	require.True(t, c.QKVBias && c.OBias && c.MLPBias)
	require.Equal(t, 4, c.NumKeyValueHeads, "null is absent")

	// Gemma: head_dim 256, tied embeddings, tanh GELU whatever hidden_act says.
	c, err = ParseConfig([]byte(`{"model_type":"gemma","hidden_act":"gelu",` + base + `}`))
	require.NoError(t, err)
	require.Equal(t, 256, c.HeadDim)
	require.True(t, c.TieWordEmbeddings)
	require.Equal(t, lora.GEGLUTanh, c.Activation)
	require.Equal(t, "gelu_pytorch_tanh", c.HiddenAct)
	// An explicit hidden_activation wins, even the erf form.
	c, err = ParseConfig([]byte(`{"model_type":"gemma2","hidden_activation":"gelu","tie_word_embeddings":false,"attention_bias":true,` + base + `}`))
	require.NoError(t, err)
	require.Equal(t, lora.GEGLU, c.Activation)
	require.False(t, c.TieWordEmbeddings)
	require.True(t, c.QKVBias && c.OBias && !c.MLPBias)

	// Qwen2 has q, k, v biases whatever attention_bias says; Mistral none.
	c, err = ParseConfig([]byte(`{"model_type":"qwen2","attention_bias":false,` + base + `}`))
	require.NoError(t, err)
	require.True(t, c.QKVBias && !c.OBias && !c.MLPBias)
	c, err = ParseConfig([]byte(`{"model_type":"mistral","attention_bias":true,"mlp_bias":true,` + base + `}`))
	require.NoError(t, err)
	require.False(t, c.QKVBias || c.OBias || c.MLPBias)

	// Accepted bitsandbytes NF4, and an unknown torch_dtype left unmapped.
	c, err = ParseConfig([]byte(`{"model_type":"llama","torch_dtype":"float64","quantization_config":{"quant_method":"bitsandbytes","load_in_4bit":true,"bnb_4bit_quant_type":"nf4"},` + base + `}`))
	require.NoError(t, err)
	require.Equal(t, "bitsandbytes", c.Quantization)
	require.Equal(t, "float64", c.TorchDType)
	require.Zero(t, c.DType)
}

func TestParseConfigErrors(t *testing.T) {
	base := `"hidden_size":64,"intermediate_size":96,"num_attention_heads":4,"num_hidden_layers":2`
	for _, c := range []struct {
		name, json, err string
		unsupported     bool
	}{
		{"not json", `{`, "unexpected end", false},
		{"no model_type", `{` + base + `}`, "model_type is missing", false},
		{"unknown model_type", `{"model_type":"phi3",` + base + `}`, `model_type "phi3" is not supported (supported: gemma, gemma2, llama, mistral, qwen2)`, true},
		{"moe", `{"model_type":"mixtral",` + base + `}`, `"mixtral"`, true},
		{"missing hidden_size", `{"model_type":"llama","intermediate_size":96,"num_attention_heads":4,"num_hidden_layers":2}`, "hidden_size is missing", false},
		{"zero layers", `{"model_type":"llama","hidden_size":64,"intermediate_size":96,"num_attention_heads":4,"num_hidden_layers":0}`, "num_hidden_layers = 0 must be positive", false},
		{"negative intermediate", `{"model_type":"llama","hidden_size":64,"intermediate_size":-1,"num_attention_heads":4,"num_hidden_layers":2}`, "intermediate_size = -1", false},
		{"huge hidden", `{"model_type":"llama","hidden_size":4000000000,"intermediate_size":96,"num_attention_heads":4,"num_hidden_layers":2}`, "hidden_size = 4000000000 exceeds", false},
		{"float size", `{"model_type":"llama","hidden_size":64.5,"intermediate_size":96,"num_attention_heads":4,"num_hidden_layers":2}`, "hidden_size", false},
		{"string size", `{"model_type":"llama","hidden_size":"64","intermediate_size":96,"num_attention_heads":4,"num_hidden_layers":2}`, "hidden_size", false},
		{"kv heads do not divide", `{"model_type":"llama","num_key_value_heads":3,` + base + `}`, "num_attention_heads 4 is not a multiple of num_key_value_heads 3", false},
		{"zero kv heads", `{"model_type":"llama","num_key_value_heads":0,` + base + `}`, "num_key_value_heads = 0", false},
		{"heads do not divide hidden", `{"model_type":"llama","hidden_size":66,"intermediate_size":96,"num_attention_heads":4,"num_hidden_layers":2}`, "hidden_size 66 is not a multiple of num_attention_heads 4, and head_dim is not given", false},
		{"zero head_dim", `{"model_type":"llama","head_dim":0,` + base + `}`, "head_dim = 0", false},
		{"q too wide", `{"model_type":"llama","head_dim":1000000,` + base + `}`, "num_attention_heads 4 × head_dim 1000000", false},
		{"bad hidden_act", `{"model_type":"llama","hidden_act":"relu",` + base + `}`, `hidden_act: activation: unsupported hidden_act "relu"`, true},
		{"bad hidden_activation", `{"model_type":"gemma","hidden_activation":"quick_gelu",` + base + `}`, `hidden_activation: `, true},
		{"bad eps", `{"model_type":"llama","rms_norm_eps":0,` + base + `}`, "rms_norm_eps = 0 must be positive", false},
		{"gptq", `{"model_type":"llama","quantization_config":{"quant_method":"gptq","bits":4},` + base + `}`, `quant_method "gptq" is not supported`, true},
		{"bnb 8-bit", `{"model_type":"llama","quantization_config":{"quant_method":"bitsandbytes","load_in_8bit":true},` + base + `}`, "LLM.int8", true},
		{"bnb fp4", `{"model_type":"llama","quantization_config":{"quant_method":"bitsandbytes","bnb_4bit_quant_type":"fp4"},` + base + `}`, `bnb_4bit_quant_type "fp4"`, true},
		{"no quant_method", `{"model_type":"llama","quantization_config":{},` + base + `}`, "no quant_method", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(c.json))
			require.ErrorContains(t, err, c.err)
			if c.unsupported {
				require.ErrorIs(t, err, ErrUnsupported)
			} else {
				require.ErrorIs(t, err, ErrBadCheckpoint)
			}
		})
	}
}

func TestReadConfigFiles(t *testing.T) {
	dir := t.TempDir()
	_, err := ReadConfig(dir)
	require.True(t, errors.Is(err, os.ErrNotExist), "%v", err)

	require.NoError(t, os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"model_type":"llama"}`), 0o644))
	_, err = ReadConfig(dir)
	require.ErrorContains(t, err, "hf: "+filepath.Join(dir, ConfigFile)+": hidden_size is missing")

	require.NoError(t, os.WriteFile(filepath.Join(dir, ConfigFile), []byte(llama3_8B), 0o644))
	c, err := ReadConfig(dir)
	require.NoError(t, err)
	require.Equal(t, 8, c.NumKeyValueHeads)

	// A directory where config.json should be, and a file past the limit.
	d2 := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(d2, ConfigFile), 0o755))
	_, err = ReadConfig(d2)
	require.ErrorContains(t, err, "not a regular file")
	big := make([]byte, maxConfigBytes+1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, ConfigFile), big, 0o644))
	_, err = ReadConfig(dir)
	require.ErrorContains(t, err, "more than the")
}

func TestShapes(t *testing.T) {
	c, err := ParseConfig([]byte(gemma7B))
	require.NoError(t, err)
	for m, want := range map[Module][2]int{
		Q: {4096, 3072}, K: {4096, 3072}, V: {4096, 3072}, O: {3072, 4096},
		Gate: {24576, 3072}, Up: {24576, 3072}, Down: {3072, 24576},
	} {
		out, in := c.Shape(m)
		require.Equal(t, want, [2]int{out, in}, m)
	}
	require.Equal(t, "model.layers.7.self_attn.k_proj", Prefix(7, K))
	require.Equal(t, "model.layers.0.mlp.down_proj", Prefix(0, Down))
	for _, n := range []string{"model.layers.07.mlp.up_proj.weight", "model.layers.x.a", "model.layers.3", "model.norm.weight", "model.layers.-1.a"} {
		_, ok := layerOf(n)
		require.False(t, ok, n)
	}
	i, ok := layerOf("model.layers.12.self_attn.q_proj.bias")
	require.True(t, ok)
	require.Equal(t, 12, i)
}

// FuzzParseConfig checks that no config.json panics and that what parses
// satisfies the invariants the loaders rely on.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{llama3_8B, qwen2_7B, gemma7B, gemma2_9B, mistralNemo, `{}`, `{"model_type":"llama"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		if c.HiddenSize < 1 || c.IntermediateSize < 1 || c.HeadDim < 1 || c.NumHiddenLayers < 1 ||
			c.NumKeyValueHeads < 1 || c.NumAttentionHeads%c.NumKeyValueHeads != 0 || c.NumAttentionHeads*c.HeadDim > maxWidth {
			t.Fatalf("accepted an invalid config %+v", c)
		}
	})
}
