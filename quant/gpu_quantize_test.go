package quant

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// edgeWeights puts decision points into block 0 of a copy of w: absmax 1
// (so x = w exactly), every threshold and its float32 neighbours (ties go
// to the lower code), and the table values.
func edgeWeights(w []float32) []float32 {
	w = append([]float32(nil), w...)
	edge := []float32{1}
	for _, t := range NF4Thresholds {
		edge = append(edge, t, math.Nextafter32(t, 2), math.Nextafter32(t, -2))
	}
	edge = append(edge, NF4Table[:]...)
	copy(w, edge)
	return w
}

// gpuQuantize quantizes the [shape] weight w, stored as d, on the device.
func gpuQuantize(t *testing.T, dev *vk.Device, w []float32, shape [2]int, bs int, d dtype.DType) *DeviceNF4 {
	wt, err := dev.TensorFrom(d, w, shape[:]...)
	require.NoError(t, err)
	defer wt.Release()
	rec := vktest.Recorder(t, dev)
	q, err := QuantizeOnDevice(dev, rec, wt, bs)
	require.NoError(t, err)
	t.Cleanup(q.Release)
	submit(t, rec)
	return q
}

// TestQuantizeOnDeviceMatchesCPU: packed codes and absmax equal
// QuantizeNF4's bit for bit, the CPU-side double quantization of the GPU
// scales equals QuantizeNF4's, and decoding the GPU result on the GPU gives
// the CPU decoding.
func TestQuantizeOnDeviceMatchesCPU(t *testing.T) {
	dev := vktest.Device(t)
	r := rand.New(rand.NewPCG(21, 22))
	cases := append([]gpuCase{{[2]int{33, 77}, 32}, {[2]int{3, 4096 + 4096 + 5}, 4096}}, gpuCases...)
	for _, d := range gpuDTypes {
		for _, c := range cases {
			what := fmt.Sprintf("%v %v bs %d", d, c.shape, c.bs)
			n := c.shape[0] * c.shape[1]
			w := hardWeights(r, n, c.bs)
			if n >= 64 {
				w = edgeWeights(w)
			}
			want, err := QuantizeNF4(w, c.shape, c.bs, d, false)
			require.NoError(t, err)
			q := gpuQuantize(t, dev, w, c.shape, c.bs, d)
			got, err := q.Download(false)
			require.NoError(t, err, what)
			requireSameAbsmax(t, what, got.State.Absmax, want.State.Absmax)
			requireSameCodes(t, what, got.Packed, want.Packed)
			require.Equal(t, want, got, what)

			wantDQ, err := QuantizeNF4(w, c.shape, c.bs, d, true)
			require.NoError(t, err)
			gotDQ, err := q.Download(true)
			require.NoError(t, err, what)
			require.Equal(t, wantDQ, gotDQ, what+" double-quantized")

			out, err := dev.NewTensor(d, c.shape[:]...)
			require.NoError(t, err)
			rec := vktest.Recorder(t, dev)
			require.NoError(t, DequantizeOnDevice(dev, rec, q, out))
			submit(t, rec)
			raw, err := out.RawBytes()
			out.Release()
			require.NoError(t, err)
			requireSameBits(t, what+" round trip", d, raw, dtype.Encode(d, Dequantize(want)))
		}
	}
}

// TestRecipIsCorrectlyRounded checks the reciprocal the shader computes by
// long division against Go's correctly rounded 1/a, through absmax values
// whose mantissas are adversarial for approximate reciprocals: a block of
// [a, w...] quantizes to the CPU's codes only if f32(1/a) is exact, since
// each w is chosen so that w·r sits next to a threshold.
func TestRecipIsCorrectlyRounded(t *testing.T) {
	dev := vktest.Device(t)
	r := rand.New(rand.NewPCG(31, 32))
	const bs = 32
	var w []float32
	for b := 0; b < 512; b++ {
		a := float32(math.Ldexp(1+r.Float64(), r.IntN(60)-30))
		if b%7 == 0 {
			a = math.Float32frombits(math.Float32bits(a) | 0x7fffff) // all-ones mantissa
		}
		block := []float32{a}
		for len(block) < bs {
			thr := NF4Thresholds[r.IntN(len(NF4Thresholds))]
			// w = t·a, nudged by a few ulps: w·f32(1/a) lands on either side of t.
			v := float32(thr * a)
			for s := r.IntN(5) - 2; s != 0; s -= sign(s) {
				v = math.Nextafter32(v, float32(sign(s))*float32(math.Inf(1)))
			}
			block = append(block, v)
		}
		w = append(w, block...)
	}
	shape := [2]int{len(w) / 64, 64}
	want, err := QuantizeNF4(w, shape, bs, dtype.F32, false)
	require.NoError(t, err)
	got, err := gpuQuantize(t, dev, w, shape, bs, dtype.F32).Download(false)
	require.NoError(t, err)
	requireSameCodes(t, "adversarial reciprocals", got.Packed, want.Packed)
}

func sign(s int) int {
	if s < 0 {
		return -1
	}
	return 1
}

func TestQuantizeOnDeviceRejects(t *testing.T) {
	dev := vktest.Device(t)
	rec := vktest.Recorder(t, dev)
	w, err := dev.NewTensor(dtype.F32, 4, 16)
	require.NoError(t, err)
	defer w.Release()
	for _, bs := range []int{16, 48, 8192} {
		_, err := QuantizeOnDevice(dev, rec, w, bs)
		require.Error(t, err, "blocksize %d", bs)
	}
	flat, err := dev.NewTensor(dtype.F32, 64)
	require.NoError(t, err)
	defer flat.Release()
	_, err = QuantizeOnDevice(dev, rec, flat, 32)
	require.Error(t, err, "1-D weight")
	u8, err := dev.NewTensor(dtype.U8, 4, 16)
	require.NoError(t, err)
	defer u8.Release()
	_, err = QuantizeOnDevice(dev, rec, u8, 32)
	require.Error(t, err, "u8 weight")
}

func requireSameAbsmax(t *testing.T, what string, got, want []float32) {
	t.Helper()
	require.Len(t, got, len(want), what)
	for b := range want {
		if math.Float32bits(got[b]) != math.Float32bits(want[b]) {
			t.Fatalf("%s: absmax[%d] = %v, want %v", what, b, got[b], want[b])
		}
	}
}

// requireSameCodes compares packed codes nibble by nibble, naming the first
// few elements that differ.
func requireSameCodes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	require.Len(t, got, len(want), what)
	bad := 0
	for k := 0; k < 2*len(want); k++ {
		if g, w := nibble(got, k), nibble(want, k); g != w {
			if bad < 5 {
				t.Errorf("%s: element %d: code %d, want %d", what, k, g, w)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d codes differ", what, bad, 2*len(want))
	}
}
