package quant

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

func TestMain(m *testing.M) { vktest.Main(m) }

var gpuDTypes = []dtype.DType{dtype.F32, dtype.F16, dtype.BF16}

// gpuCase is a shape and blocksize; the shapes are odd or not multiples of
// 64 so blocks straddle rows and the last byte or word is partial.
type gpuCase struct {
	shape [2]int
	bs    int
}

var gpuCases = []gpuCase{
	{[2]int{1, 1}, 32}, {[2]int{3, 7}, 32}, {[2]int{70, 33}, 64}, {[2]int{5, 129}, 128},
	{[2]int{64, 97}, 256}, {[2]int{13, 301}, 1024}, {[2]int{37, 41}, 4096}, {[2]int{9, 4099}, 4096},
}

// hardWeights are normal weights whose blocks vary in scale over many
// orders of magnitude, so that decoded values hit f16 subnormals and bf16
// rounding ties; one block is all zero (absmax 0, every code 0).
func hardWeights(r *rand.Rand, n, bs int) []float32 {
	w := randNormal(r, n, 1)
	scales := []float32{1, 3e-2, 1e-5, 7e-7, 250, 0}
	for b := 0; b*bs < n; b++ {
		s := scales[b%len(scales)]
		for k := b * bs; k < min((b+1)*bs, n); k++ {
			w[k] *= s
		}
	}
	return w
}

// submit runs the recording and fails the test on error.
func submit(t *testing.T, rec *vk.Recorder) {
	t.Helper()
	require.NoError(t, rec.Submit())
}

// gpuDequant decodes w on the device and returns the output's raw bytes.
func gpuDequant(t *testing.T, dev *vk.Device, w *NF4Weight) []byte {
	dw, err := Upload(dev, w)
	require.NoError(t, err)
	defer dw.Release()
	out, err := dev.NewTensor(w.State.DType, w.State.Shape[:]...)
	require.NoError(t, err)
	defer out.Release()
	rec := vktest.Recorder(t, dev)
	require.NoError(t, DequantizeOnDevice(dev, rec, dw, out))
	submit(t, rec)
	raw, err := out.RawBytes()
	require.NoError(t, err)
	return raw
}

// TestDequantizeOnDeviceMatchesCPU compares bit patterns with the CPU
// decoder for every dtype, with and without double quantization.
func TestDequantizeOnDeviceMatchesCPU(t *testing.T) {
	dev := vktest.Device(t)
	r := rand.New(rand.NewPCG(11, 12))
	for _, d := range gpuDTypes {
		for _, c := range gpuCases {
			for _, dq := range []bool{false, true} {
				n := c.shape[0] * c.shape[1]
				w, err := QuantizeNF4(hardWeights(r, n, c.bs), c.shape, c.bs, d, dq)
				require.NoError(t, err)
				want := dtype.Encode(d, Dequantize(w))
				got := gpuDequant(t, dev, w)
				requireSameBits(t, fmt.Sprintf("%v %v bs %d dq %v", d, c.shape, c.bs, dq), d, got, want)
			}
		}
	}
}

// TestDequantizeOnDeviceTwoDimensionalGrid uses more elements than one grid
// row holds (maxGridX·gpuWG), so the y index of the 2-D grid is exercised.
func TestDequantizeOnDeviceTwoDimensionalGrid(t *testing.T) {
	dev := vktest.Device(t)
	shape := [2]int{301, 1000} // 301000 > 1024·256
	require.Greater(t, shape[0]*shape[1], maxGridX*gpuWG)
	w, err := QuantizeNF4(randNormal(rand.New(rand.NewPCG(5, 6)), shape[0]*shape[1], 0.05), shape, 64, dtype.BF16, true)
	require.NoError(t, err)
	requireSameBits(t, "bf16 [301 1000]", dtype.BF16, gpuDequant(t, dev, w), dtype.Encode(dtype.BF16, Dequantize(w)))
}

func TestGrid2D(t *testing.T) {
	for _, units := range []int{1, 7, maxGridX, maxGridX + 1, 65535 * 3} {
		gx, gy := grid2D(units)
		require.LessOrEqual(t, gx, maxGridX)
		require.GreaterOrEqual(t, gx*gy, units)
		require.Less(t, gx*(gy-1), units, "no all-idle grid row")
	}
}

func TestDequantizeOnDeviceRejects(t *testing.T) {
	dev := vktest.Device(t)
	w, err := QuantizeNF4(make([]float32, 6), [2]int{2, 3}, 32, dtype.F16, false)
	require.NoError(t, err)
	dw, err := Upload(dev, w)
	require.NoError(t, err)
	defer dw.Release()
	rec := vktest.Recorder(t, dev)
	for _, shape := range [][]int{{3, 2}, {6}} {
		out, err := dev.NewTensor(dtype.F16, shape...)
		require.NoError(t, err)
		require.Error(t, DequantizeOnDevice(dev, rec, dw, out), "shape %v", shape)
		out.Release()
	}
	out, err := dev.NewTensor(dtype.BF16, 2, 3)
	require.NoError(t, err)
	defer out.Release()
	require.Error(t, DequantizeOnDevice(dev, rec, dw, out), "wrong dtype")
	require.Error(t, DequantizeOnDevice(dev, nil, dw, out))
	require.NoError(t, rec.Err(), "argument errors are not recording errors")
}

// requireSameBits compares two encodings of d element by element and names
// the first few mismatches with their values.
func requireSameBits(t *testing.T, what string, d dtype.DType, got, want []byte) {
	t.Helper()
	require.Len(t, got, len(want), what)
	sz := d.Size()
	bad := 0
	for i := 0; i < len(want); i += sz {
		if string(got[i:i+sz]) != string(want[i:i+sz]) {
			if bad < 5 {
				g, w := make([]float32, 1), make([]float32, 1)
				dtype.Decode(d, got[i:i+sz], g)
				dtype.Decode(d, want[i:i+sz], w)
				t.Errorf("%s: element %d: got %v (%x), want %v (%x)", what, i/sz, g[0], got[i:i+sz], w[0], want[i:i+sz])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d elements differ", what, bad, len(want)/sz)
	}
}

// TestUploadNestedMatchesUpload: scales decoded on the GPU equal the CPU
// decode bit for bit, and so do the weights decoded from them; more than
// one grid row of scales (maxGridX·gpuWG) exercises the 2-D grid.
func TestUploadNestedMatchesUpload(t *testing.T) {
	dev := vktest.Device(t)
	r := rand.New(rand.NewPCG(41, 42))
	cases := append([]gpuCase{{[2]int{1100, 16385}, 64}}, gpuCases...)
	for _, c := range cases {
		n := c.shape[0] * c.shape[1]
		w, err := QuantizeNF4(hardWeights(r, n, c.bs), c.shape, c.bs, dtype.BF16, true)
		require.NoError(t, err)
		what := fmt.Sprintf("%v bs %d", c.shape, c.bs)
		cpu, err := Upload(dev, w)
		require.NoError(t, err)
		t.Cleanup(cpu.Release)
		rec := vktest.Recorder(t, dev)
		gpu, err := UploadNested(dev, rec, w)
		require.NoError(t, err)
		t.Cleanup(gpu.Release)
		submit(t, rec)
		want, err := cpu.State.RawBytes()
		require.NoError(t, err)
		got, err := gpu.State.RawBytes()
		require.NoError(t, err)
		requireSameBits(t, what+" state", dtype.F32, got, want)
		// (Not Download: a decoded nested scale may be negative, which a
		// plain state rejects.)
		packed, err := gpu.Packed.RawBytes()
		require.NoError(t, err)
		require.Equal(t, w.Packed, packed, what)
	}
}

// TestDequantizeRegionOnDevice decodes sub-blocks of a weight whose blocks
// straddle rows, bit for bit as the same region of the CPU decoding.
func TestDequantizeRegionOnDevice(t *testing.T) {
	dev := vktest.Device(t)
	const out, in = 70, 97
	w, err := QuantizeNF4(hardWeights(rand.New(rand.NewPCG(7, 8)), out*in, 64), [2]int{out, in}, 64, dtype.BF16, true)
	require.NoError(t, err)
	full := Dequantize(w)
	dw, err := Upload(dev, w)
	require.NoError(t, err)
	defer dw.Release()
	for _, r := range [][4]int{{0, 0, out, in}, {3, 0, 40, in}, {0, 17, out, 33}, {21, 50, 9, 47}, {69, 96, 1, 1}} {
		row0, col0, rows, cols := r[0], r[1], r[2], r[3]
		dst, err := dev.NewTensor(dtype.BF16, rows, cols)
		require.NoError(t, err)
		rec := vktest.Recorder(t, dev)
		require.NoError(t, DequantizeRegionOnDevice(dev, rec, dw, dst, row0, col0, rows, cols))
		submit(t, rec)
		got, err := dst.RawBytes()
		require.NoError(t, err)
		dst.Release()
		want := make([]float32, 0, rows*cols)
		for i := row0; i < row0+rows; i++ {
			want = append(want, full[i*in+col0:i*in+col0+cols]...)
		}
		requireSameBits(t, fmt.Sprintf("region %v", r), dtype.BF16, got, dtype.Encode(dtype.BF16, want))
	}
	dst, err := dev.NewTensor(dtype.BF16, 2, 2)
	require.NoError(t, err)
	defer dst.Release()
	rec := vktest.Recorder(t, dev)
	require.Error(t, DequantizeRegionOnDevice(dev, rec, dw, dst, 69, 96, 2, 2), "a region past the weight's end")
	require.Error(t, DequantizeRegionOnDevice(dev, rec, dw, dst, 0, 0, 3, 2), "an output of the wrong shape")
}

// DequantizeOnDevice with a recorder of another device is refused before
// anything is recorded.
func TestDequantizeOnDeviceForeignRecorder(t *testing.T) {
	a := vktest.Device(t)
	b, err := vk.Open(vk.Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Release()) }()
	q, err := QuantizeNF4(make([]float32, 64*8), [2]int{8, 64}, 64, dtype.F16, false)
	require.NoError(t, err)
	w, err := Upload(a, q)
	require.NoError(t, err)
	defer w.Release()
	out, err := a.NewTensor(dtype.F16, 8, 64)
	require.NoError(t, err)
	defer out.Release()
	rec, err := b.NewRecorder()
	require.NoError(t, err)
	defer rec.Release()
	require.ErrorContains(t, DequantizeOnDevice(a, rec, w, out), "another device")
	require.Zero(t, rec.Dispatches())
}
