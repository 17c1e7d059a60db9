package quant

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/safetensors"
)

type testFile struct {
	path string
	file *safetensors.File
}

func loadTestdata(t testing.TB) []testFile {
	paths, err := filepath.Glob("../testdata/small/*.safetensors")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	var out []testFile
	for _, p := range paths {
		f, err := safetensors.ReadFile(p)
		require.NoError(t, err)
		out = append(out, testFile{p, f})
	}
	return out
}

// quantized lists (prefix, quant) of the NF4 projections named in metadata.
func quantized(f *safetensors.File) map[string]string {
	m := map[string]string{}
	for _, p := range strings.Split(f.Metadata["projections"], ",") {
		if q := f.Metadata["quant."+p]; q != "none" {
			m[p] = q
		}
	}
	return m
}

func saveLoad(t *testing.T, w *NF4Weight) *NF4Weight {
	f := safetensors.New()
	require.NoError(t, SaveNF4(f, "p", w))
	b, err := safetensors.Marshal(f)
	require.NoError(t, err)
	g, err := safetensors.Parse(b)
	require.NoError(t, err)
	got, err := LoadNF4(g, "p")
	require.NoError(t, err)
	return got
}

// TestLoadTestdata loads every quantized projection of the conformance
// vectors and checks what can be proven without the original weight:
//
//   - the layout matches the metadata and the LoRA shapes;
//   - SaveNF4 reproduces every stored tensor byte for byte, JSON included;
//   - re-quantizing the decoded weight reproduces every code. A block's
//     largest element has code 0 or 15 (|x| ≈ 1 is past the outer
//     thresholds), so it decodes to ±round(a) and the new absmax is
//     round_to_dtype(a); then each decoded c·a maps back to c, because the
//     dtype rounding (≤ 2^-8 relative) is far inside the gaps between
//     table entries. Hence also absmax' == round_to_dtype(a) exactly.
func TestLoadTestdata(t *testing.T) {
	count := 0
	for _, tf := range loadTestdata(t) {
		f := tf.file
		d, err := dtype.Parse(f.Metadata["dtype"])
		require.NoError(t, err)
		for p, q := range quantized(f) {
			count++
			require.True(t, IsNF4(f, p))
			w, err := LoadNF4(f, p)
			require.NoError(t, err, "%s %s", tf.path, p)
			s := w.State
			require.Equal(t, 64, s.Blocksize)
			require.Equal(t, d, s.DType)
			require.True(t, s.StandardCode())
			require.Equal(t, q == "nf4-dq", s.Nested != nil, "%s %s", tf.path, p)
			A, aShape, err := f.Float32(p + ".lora_A")
			require.NoError(t, err)
			_, bShape, err := f.Float32(p + ".lora_B")
			require.NoError(t, err)
			require.Equal(t, [2]int{bShape[0], aShape[1]}, s.Shape, "%s %s", tf.path, p)
			_ = A

			// Save reproduces the stored tensors exactly.
			g := safetensors.New()
			require.NoError(t, SaveNF4(g, p, w))
			for name, tt := range g.Tensors {
				orig, ok := f.Tensors[name]
				require.True(t, ok, "%s: SaveNF4 wrote extra key %s", tf.path, name)
				require.Equal(t, orig, tt, "%s: %s", tf.path, name)
			}
			for name := range f.Tensors {
				if strings.HasPrefix(name, p+".weight") {
					require.Contains(t, g.Tensors, name)
				}
			}

			// Re-quantization is consistent.
			dense := Dequantize(w)
			a := w.Absmax()
			r, err := QuantizeNF4(dense, s.Shape, s.Blocksize, s.DType, false)
			require.NoError(t, err)
			require.Equal(t, w.Packed, r.Packed, "%s %s: codes", tf.path, p)
			for b := range a {
				require.Equal(t, dtype.Round(d, a[b]), r.State.Absmax[b], "%s %s block %d", tf.path, p, b)
			}
		}
	}
	require.Equal(t, 18, count) // quantized projections in testdata/small
}

// Every f32 plain-NF4 file stores exact scales, so quantizing the decoded
// weight must give back the identical checkpoint.
func TestRequantizeF32IsIdentity(t *testing.T) {
	for _, tf := range loadTestdata(t) {
		if tf.file.Metadata["dtype"] != "f32" {
			continue
		}
		for p, q := range quantized(tf.file) {
			if q != "nf4" {
				continue
			}
			w, err := LoadNF4(tf.file, p)
			require.NoError(t, err)
			r, err := QuantizeNF4(Dequantize(w), w.State.Shape, 64, dtype.F32, false)
			require.NoError(t, err)
			require.Equal(t, w, r, "%s %s", tf.path, p)
		}
	}
}

func TestPyFloatRepr(t *testing.T) {
	for f, want := range map[float64]string{
		0.30913281440734863: "0.30913281440734863", 2: "2.0", 1e-05: "1e-05", 1.5e-05: "1.5e-05",
		0.0001: "0.0001", 1e16: "1e+16", 123456789012345.0: "123456789012345.0", -0.5: "-0.5", 0: "0.0",
	} {
		require.Equal(t, want, pyFloatRepr(f))
	}
}

// mutate copies the tensors of an NF4 file so that a case can edit them.
func nf4File(t *testing.T, dq bool) *safetensors.File {
	w, err := QuantizeNF4(randNormal(newRand(), 10*30, 0.1), [2]int{10, 30}, 64, dtype.BF16, dq)
	require.NoError(t, err)
	f := safetensors.New()
	require.NoError(t, SaveNF4(f, "p", w))
	return f
}

func TestLoadRejects(t *testing.T) {
	js := func(s string) safetensors.Tensor {
		return safetensors.Tensor{DType: "U8", Shape: []int{len(s)}, Data: []byte(s)}
	}
	f32 := func(xs ...float32) safetensors.Tensor {
		return safetensors.Tensor{DType: "F32", Shape: []int{len(xs)}, Data: dtype.Encode(dtype.F32, xs)}
	}
	nan := float32(0)
	nan = nan / nan
	cases := []struct {
		name string
		dq   bool
		edit func(f *safetensors.File)
		err  string
	}{
		{"no state", false, func(f *safetensors.File) { delete(f.Tensors, "p"+keyQuantState) }, `no tensor "p.weight.quant_state.bitsandbytes__nf4"`},
		{"fp4", false, func(f *safetensors.File) { f.Tensors["p"+keyFP4State] = js("{}") }, "FP4 is not supported"},
		{"bad json", false, func(f *safetensors.File) { f.Tensors["p"+keyQuantState] = js("{") }, "unexpected end of JSON"},
		{"missing blocksize", false, func(f *safetensors.File) {
			f.Tensors["p"+keyQuantState] = js(`{"quant_type": "nf4", "dtype": "bfloat16", "shape": [10, 30]}`)
		}, "needs quant_type, blocksize, dtype and shape"},
		{"quant type", false, func(f *safetensors.File) {
			f.Tensors["p"+keyQuantState] = js(`{"quant_type": "fp4", "blocksize": 64, "dtype": "bfloat16", "shape": [10, 30]}`)
		}, `quant_type "fp4"`},
		{"dtype", false, func(f *safetensors.File) {
			f.Tensors["p"+keyQuantState] = js(`{"quant_type": "nf4", "blocksize": 64, "dtype": "uint8", "shape": [10, 30]}`)
		}, `dtype "uint8"`},
		{"rank", false, func(f *safetensors.File) {
			f.Tensors["p"+keyQuantState] = js(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [300]}`)
		}, "shape [300] is not [out, in]"},
		{"blocksize", false, func(f *safetensors.File) {
			f.Tensors["p"+keyQuantState] = js(`{"quant_type": "nf4", "blocksize": 65, "dtype": "bfloat16", "shape": [10, 30]}`)
		}, "blocksize 65"},
		{"shape vs packed", false, func(f *safetensors.File) {
			f.Tensors["p"+keyQuantState] = js(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [10, 31]}`)
		}, "shape [10 31] in the quant state needs 155 packed bytes, tensor has shape [150 1] (150 bytes)"},
		{"huge shape", false, func(f *safetensors.File) {
			f.Tensors["p"+keyQuantState] = js(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [4611686018427387904, 4]}`)
		}, "at most"},
		{"absmax length", false, func(f *safetensors.File) { f.Tensors["p"+keyAbsmax] = f32(1, 2) }, "want 5 values, tensor has shape [2]"},
		{"absmax nan", false, func(f *safetensors.File) { f.Tensors["p"+keyAbsmax] = f32(1, 2, nan, 1, 1) }, "absmax[2] = NaN"},
		{"absmax u8", false, func(f *safetensors.File) {
			f.Tensors["p"+keyAbsmax] = safetensors.Tensor{DType: "U8", Shape: []int{5}, Data: make([]byte, 5)}
		}, "want F32, F16 or BF16"},
		{"quant_map length", false, func(f *safetensors.File) { f.Tensors["p"+keyQuantMap] = f32(1) }, "want 16 values"},
		{"weight dtype", false, func(f *safetensors.File) { f.Tensors["p"+keyWeight] = f32(1) }, "want U8"},
		{"unexpected nested", false, func(f *safetensors.File) { f.Tensors["p"+keyNestedAbsmax] = f32(1) }, "present but the quant state has no nested_offset"},
		{"nested no map", true, func(f *safetensors.File) { delete(f.Tensors, "p"+keyNestedMap) }, `no tensor "p.weight.nested_quant_map"`},
		{"nested absmax f32", true, func(f *safetensors.File) { f.Tensors["p"+keyAbsmax] = f32(1, 1, 1, 1, 1) }, "want U8"},
		{"nested absmax count", true, func(f *safetensors.File) {
			f.Tensors["p"+keyAbsmax] = safetensors.Tensor{DType: "U8", Shape: []int{4}, Data: make([]byte, 4)}
		}, "needs 5 codes, tensor has shape [4]"},
		{"nested_absmax count", true, func(f *safetensors.File) { f.Tensors["p"+keyNestedAbsmax] = f32(1, 1) }, "want 1 values, tensor has shape [2]"},
		{"nested dtype", true, func(f *safetensors.File) {
			f.Tensors["p"+keyQuantState] = js(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [10, 30], "nested_blocksize": 256, "nested_dtype": "float16", "nested_offset": 0.1}`)
		}, `nested_dtype "float16"`},
		{"nested no blocksize", true, func(f *safetensors.File) {
			f.Tensors["p"+keyQuantState] = js(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [10, 30], "nested_offset": 0.1}`)
		}, "nested_offset without nested_blocksize"},
		{"offset overflow", true, func(f *safetensors.File) {
			f.Tensors["p"+keyQuantState] = js(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [10, 30], "nested_blocksize": 256, "nested_offset": 1e300}`)
		}, "nested_offset +Inf"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := nf4File(t, c.dq)
			_, err := LoadNF4(f, "p")
			require.NoError(t, err)
			c.edit(f)
			_, err = LoadNF4(f, "p")
			require.Error(t, err)
			require.Contains(t, err.Error(), c.err)
		})
	}
}
