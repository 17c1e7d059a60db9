package hf

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/hf/hftest"
	"github.com/vklora/vklora/safetensors"
)

func TestOpenSingleFile(t *testing.T) {
	m := hftest.WriteT(t, hftest.Spec{Layers: 2})
	c, err := Open(m.Dir)
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, []string{SingleFile}, c.Files())
	require.Equal(t, len(m.Shapes), len(c.Names()))
	require.Equal(t, "llama", c.Config().ModelType)
	info, path, ok := c.Info("model.layers.1.mlp.down_proj.weight")
	require.True(t, ok)
	require.Equal(t, []int{16, 24}, info.Shape)
	require.Equal(t, m.Path(SingleFile), path)
	_, _, ok = c.Info("nope")
	require.False(t, ok)
}

func TestOpenSharded(t *testing.T) {
	m := hftest.WriteT(t, hftest.Spec{ModelType: "qwen2", Layers: 3, Shards: 3, KVHeads: 2})
	c, err := Open(m.Dir)
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, m.Files, c.Files())
	require.Len(t, c.Files(), 3)
	for name, file := range m.Where {
		_, path, ok := c.Info(name)
		require.True(t, ok, name)
		require.Equal(t, m.Path(file), path, name)
	}
	tn, err := c.ReadTensor("model.layers.2.self_attn.k_proj.bias")
	require.NoError(t, err)
	require.Equal(t, []int{8}, tn.Shape)

	// The single file wins over an index, as in transformers; here the
	// stale single file lacks the layers, so Open says so.
	f := safetensors.New()
	require.NoError(t, f.Put("model.norm.weight", "F32", []int{1}, make([]byte, 4)))
	require.NoError(t, safetensors.WriteFile(m.Path(SingleFile), f))
	_, err = Open(m.Dir)
	require.ErrorContains(t, err, `no tensor "model.layers.0.self_attn.q_proj.weight" (layer 0 q_proj, [16 16]) in model.safetensors`)
}

func TestCloseIdempotent(t *testing.T) {
	m := hftest.WriteT(t, hftest.Spec{Shards: 2})
	c, err := Open(m.Dir)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close())
	_, err = c.ReadTensor("model.norm.weight")
	require.ErrorIs(t, err, fs.ErrClosed)
}

// rewriteHeader edits the JSON header of a safetensors file in place,
// keeping its data, to build files the writer would refuse to write.
func rewriteHeader(t *testing.T, path string, edit func(h map[string]map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	n := binary.LittleEndian.Uint64(b)
	var h map[string]map[string]any
	require.NoError(t, json.Unmarshal(b[8:8+n], &h))
	edit(h)
	hb, err := json.Marshal(h)
	require.NoError(t, err)
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(hb)))
	out = append(append(out, hb...), b[8+n:]...)
	require.NoError(t, os.WriteFile(path, out, 0o644))
}

// lastTensor is the tensor whose bytes end the file.
func lastTensor(t *testing.T, path string) string {
	r, err := safetensors.Open(path)
	require.NoError(t, err)
	defer r.Close()
	best, end := "", int64(0)
	for _, n := range r.Names() {
		if i, _ := r.Info(n); i.Offset+i.Size > end {
			best, end = n, i.Offset+i.Size
		}
	}
	return best
}

// removeTensor rewrites a safetensors file without tensor name.
func removeTensor(t *testing.T, path, name string) {
	f, err := safetensors.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, f.Tensors, name)
	delete(f.Tensors, name)
	require.NoError(t, safetensors.WriteFile(path, f))
}

// renameTensor rewrites a safetensors file with tensor from renamed to.
func renameTensor(t *testing.T, path, from, to string) {
	f, err := safetensors.ReadFile(path)
	require.NoError(t, err)
	f.Tensors[to] = f.Tensors[from]
	delete(f.Tensors, from)
	require.NoError(t, safetensors.WriteFile(path, f))
}

// Every refusal names the file and the tensor (or field) at fault.
func TestOpenRefuses(t *testing.T) {
	sharded := hftest.Spec{Layers: 2, Shards: 3}
	for _, c := range []struct {
		name    string
		spec    hftest.Spec
		corrupt func(t *testing.T, m *hftest.Model)
		want    []string
		is      error
	}{
		{"missing shard", sharded, func(t *testing.T, m *hftest.Model) {
			require.NoError(t, os.Remove(m.Path(m.Files[1])))
		}, []string{"shard model-00002-of-00003.safetensors, where model.safetensors.index.json puts tensor", "is missing", "no such file"}, fs.ErrNotExist},
		{"truncated shard", sharded, func(t *testing.T, m *hftest.Model) {
			p := m.Path(m.Files[2])
			last := lastTensor(t, p)
			st, _ := os.Stat(p)
			require.NoError(t, os.Truncate(p, st.Size()-3))
			t.Setenv("HF_TEST_LAST", last)
		}, []string{"model-00003-of-00003.safetensors", "truncated", "tensor %LAST"}, ErrBadCheckpoint},
		{"tensor outside file", sharded, func(t *testing.T, m *hftest.Model) {
			p := m.Path(m.Files[0])
			last := lastTensor(t, p)
			rewriteHeader(t, p, func(h map[string]map[string]any) {
				e := h[last]
				offs := e["data_offsets"].([]any)
				begin := offs[0].(float64)
				e["shape"] = []int{1000}
				e["data_offsets"] = []float64{begin, begin + 2000}
			})
			t.Setenv("HF_TEST_LAST", last)
		}, []string{"model-00001-of-00003.safetensors", "tensor %LAST", "ends past"}, ErrBadCheckpoint},
		{"tensor not where the index says", sharded, func(t *testing.T, m *hftest.Model) {
			wm, err := m.Index()
			require.NoError(t, err)
			n := "model.embed_tokens.weight"
			require.Equal(t, m.Files[0], wm[n])
			wm[n] = m.Files[2]
			require.NoError(t, m.WriteIndex(wm))
		}, []string{"model-00003-of-00003.safetensors", `tensor "model.embed_tokens.weight" is not in this shard`, "(it is in model-00001-of-00003.safetensors)"}, ErrBadCheckpoint},
		{"shard path escapes", sharded, func(t *testing.T, m *hftest.Model) {
			wm, _ := m.Index()
			wm["model.norm.weight"] = "../model-00001-of-00003.safetensors"
			require.NoError(t, m.WriteIndex(wm))
		}, []string{`weight_map["model.norm.weight"] = "../model-00001-of-00003.safetensors"`, "not a file name inside"}, ErrBadCheckpoint},
		{"pickle shard", sharded, func(t *testing.T, m *hftest.Model) {
			wm, _ := m.Index()
			wm["model.norm.weight"] = "pytorch_model-00001.bin"
			require.NoError(t, m.WriteIndex(wm))
		}, []string{"not a .safetensors file"}, ErrUnsupported},
		{"duplicate index entry", sharded, func(t *testing.T, m *hftest.Model) {
			require.NoError(t, os.WriteFile(m.Path(IndexFile), []byte(`{"weight_map":{"a":"model-00001-of-00003.safetensors","a":"model-00002-of-00003.safetensors"}}`), 0o644))
		}, []string{`weight_map lists tensor "a" twice`}, ErrBadCheckpoint},
		{"index without weight_map", sharded, func(t *testing.T, m *hftest.Model) {
			require.NoError(t, os.WriteFile(m.Path(IndexFile), []byte(`{"metadata":{}}`), 0o644))
		}, []string{IndexFile, "weight_map is missing"}, ErrBadCheckpoint},
		{"wrong shape", hftest.Spec{Layers: 2, Config: map[string]any{"intermediate_size": 20}}, nil,
			[]string{"model.safetensors", `tensor "model.layers.0.mlp.gate_proj.weight" (layer 0 gate_proj)`, "shape [24 16], want [20 16] from intermediate_size 20 and hidden_size 16"}, ErrBadCheckpoint},
		{"wrong kv shape", hftest.Spec{Layers: 1, KVHeads: 2, Config: map[string]any{"num_key_value_heads": 1}}, nil,
			[]string{`"model.layers.0.self_attn.k_proj.weight"`, "shape [8 16], want [4 16] from num_key_value_heads 1 × head_dim 4"}, ErrBadCheckpoint},
		{"missing projection", hftest.Spec{Layers: 2, Shards: 2}, func(t *testing.T, m *hftest.Model) {
			n := "model.layers.1.self_attn.v_proj.weight"
			removeTensor(t, m.Path(m.Where[n]), n)
			wm, _ := m.Index()
			delete(wm, n)
			require.NoError(t, m.WriteIndex(wm))
		}, []string{`no tensor "model.layers.1.self_attn.v_proj.weight" (layer 1 v_proj, [16 16]) in 2 shards`}, ErrBadCheckpoint},
		{"missing qwen2 bias", hftest.Spec{ModelType: "qwen2", Layers: 1}, func(t *testing.T, m *hftest.Model) {
			removeTensor(t, m.Path(SingleFile), "model.layers.0.self_attn.k_proj.bias")
		}, []string{`no tensor "model.layers.0.self_attn.k_proj.bias"`, "qwen2 always has q, k and v biases"}, ErrBadCheckpoint},
		{"unexpected bias", hftest.Spec{Layers: 1, AttentionBias: true, Config: map[string]any{"attention_bias": nil}}, nil,
			[]string{"model.safetensors", `tensor "model.layers.0.self_attn.q_proj.bias"`, "llama has no bias on q_proj", "attention_bias false"}, ErrBadCheckpoint},
		{"more layers than the config", hftest.Spec{Layers: 3, Config: map[string]any{"num_hidden_layers": 2}}, nil,
			[]string{`tensor "model.layers.2.`, "belongs to layer 2, but config.json has num_hidden_layers = 2"}, ErrBadCheckpoint},
		{"int weight", hftest.Spec{Layers: 1}, func(t *testing.T, m *hftest.Model) {
			rewriteHeader(t, m.Path(SingleFile), func(h map[string]map[string]any) {
				h["model.layers.0.mlp.up_proj.weight"]["dtype"] = "I16"
			})
		}, []string{`tensor "model.layers.0.mlp.up_proj.weight" (layer 0 up_proj): dtype I16 is not F32, F16 or BF16`}, ErrUnsupported},
		{"gptq", hftest.Spec{Layers: 1}, func(t *testing.T, m *hftest.Model) {
			renameTensor(t, m.Path(SingleFile), "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.qweight")
		}, []string{"GPTQ/AWQ"}, ErrUnsupported},
		{"unknown architecture", hftest.Spec{Layers: 1, Config: map[string]any{"model_type": "phi3"}}, nil,
			[]string{"config.json", `model_type "phi3" is not supported`}, ErrUnsupported},
		{"no weights", hftest.Spec{Layers: 1}, func(t *testing.T, m *hftest.Model) {
			require.NoError(t, os.Remove(m.Path(SingleFile)))
		}, []string{"no model.safetensors or model.safetensors.index.json"}, ErrBadCheckpoint},
		{"pickle only", hftest.Spec{Layers: 1}, func(t *testing.T, m *hftest.Model) {
			require.NoError(t, os.Rename(m.Path(SingleFile), m.Path("pytorch_model.bin")))
		}, []string{"pytorch_model.bin is a pickle file"}, ErrUnsupported},
		{"nf4 packed size", hftest.Spec{Layers: 1, NF4: []string{"gate_proj", "up_proj", "down_proj"}, Config: map[string]any{"intermediate_size": 20}}, nil,
			[]string{`tensor "model.layers.0.mlp.gate_proj.weight" (layer 0 gate_proj): U8[192 1] is not the 160 packed 4-bit codes of a [20 16] weight`}, ErrBadCheckpoint},
		{"nf4 without scales", hftest.Spec{Layers: 1, NF4: []string{"q_proj"}}, func(t *testing.T, m *hftest.Model) {
			removeTensor(t, m.Path(SingleFile), "model.layers.0.self_attn.q_proj.weight.absmax")
		}, []string{`no tensor "model.layers.0.self_attn.q_proj.weight.absmax"`}, ErrBadCheckpoint},
		{"fp4", hftest.Spec{Layers: 1, NF4: []string{"q_proj"}}, func(t *testing.T, m *hftest.Model) {
			renameTensor(t, m.Path(SingleFile), "model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4",
				"model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__fp4")
		}, []string{`tensor "model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__fp4": bitsandbytes FP4 is not supported`}, ErrUnsupported},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := hftest.WriteT(t, c.spec)
			if c.corrupt != nil {
				c.corrupt(t, m)
			}
			ck, err := Open(m.Dir)
			if err == nil {
				ck.Close()
			}
			require.Error(t, err)
			t.Log(err)
			for _, w := range c.want {
				w = strings.ReplaceAll(w, "%LAST", `"`+os.Getenv("HF_TEST_LAST")+`"`)
				require.ErrorContains(t, err, w)
			}
			require.ErrorIs(t, err, c.is)
		})
	}
}

// countingReader counts the bytes read through it, per file.
type countingReader struct {
	f     *os.File
	mu    *sync.Mutex
	reads *[]int64
}

func (c countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.mu.Lock()
	*c.reads = append(*c.reads, int64(len(p)))
	c.mu.Unlock()
	return c.f.ReadAt(p, off)
}

// countReads makes Open read shards through counters; reads returns the
// sizes of every ReadAt so far and clears them.
func countReads(t *testing.T) (reads func() []int64) {
	var mu sync.Mutex
	var all []int64
	old := openShard
	openShard = func(path string) (*safetensors.Reader, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { f.Close() })
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		return safetensors.NewReader(countingReader{f, &mu, &all}, st.Size(), path)
	}
	t.Cleanup(func() { openShard = old })
	return func() []int64 {
		mu.Lock()
		defer mu.Unlock()
		r := all
		all = nil
		return r
	}
}

func sum(xs []int64) (n int64) {
	for _, x := range xs {
		n += x
	}
	return n
}

// Open reads the shards' headers and nothing else; ReadTensor reads one
// tensor's bytes.
func TestOpenReadsHeadersOnly(t *testing.T) {
	m := hftest.WriteT(t, hftest.Spec{Layers: 2, Shards: 3})
	reads := countReads(t)
	c, err := Open(m.Dir)
	require.NoError(t, err)
	defer c.Close()
	var headers int64
	for _, f := range m.Files {
		b, err := os.ReadFile(m.Path(f))
		require.NoError(t, err)
		headers += 8 + int64(binary.LittleEndian.Uint64(b))
	}
	require.Equal(t, headers, sum(reads()))

	name := "model.layers.1.mlp.up_proj.weight"
	_, err = c.ReadTensor(name)
	require.NoError(t, err)
	info, _, _ := c.Info(name)
	require.Equal(t, []int64{info.Size}, reads())
}

func TestReadTensorMissing(t *testing.T) {
	m := hftest.WriteT(t, hftest.Spec{Layers: 1})
	c, err := Open(m.Dir)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.ReadTensor("model.layers.9.mlp.up_proj.weight")
	require.ErrorContains(t, err, `no tensor "model.layers.9.mlp.up_proj.weight"`)
	require.True(t, errors.Is(err, ErrBadCheckpoint))
}

// The Hub cache keeps a snapshot as symlinks into a blobs directory.
func TestOpenSymlinkedSnapshot(t *testing.T) {
	m := hftest.WriteT(t, hftest.Spec{Layers: 1, Shards: 2})
	blobs, snap := t.TempDir(), t.TempDir()
	entries, err := os.ReadDir(m.Dir)
	require.NoError(t, err)
	for i, e := range entries {
		blob := filepath.Join(blobs, fmt.Sprintf("blob%d", i))
		require.NoError(t, os.Rename(m.Path(e.Name()), blob))
		require.NoError(t, os.Symlink(blob, filepath.Join(snap, e.Name())))
	}
	c, err := Open(snap)
	require.NoError(t, err)
	require.Equal(t, m.Files, c.Files())
	require.NoError(t, c.Close())
}
