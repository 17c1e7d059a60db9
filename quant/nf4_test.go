package quant

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
)

var thresholdsHex = []string{"-0x1.b239b2p-1", "-0x1.38a4e0p-1", "-0x1.d70900p-2", "-0x1.5bd4ecp-2", "-0x1.e079d8p-3",
	"-0x1.1a7178p-3", "-0x1.74f0e2p-5", "0x1.45f5fep-5", "0x1.ec90c6p-4", "0x1.a0cfc0p-3",
	"0x1.2b05a8p-2", "0x1.8ea7f2p-2", "0x1.00da06p-1", "0x1.491b5ep-1", "0x1.b913b2p-1"}

func TestThresholdsAreMidpoints(t *testing.T) {
	for i, h := range thresholdsHex {
		v, err := strconv.ParseFloat(h, 32)
		require.NoError(t, err)
		require.Equal(t, float32(v), NF4Thresholds[i], "threshold %d", i)
		mid := (float64(NF4Table[i]) + float64(NF4Table[i+1])) / 2
		require.LessOrEqual(t, math.Abs(float64(NF4Thresholds[i])-mid), math.Ldexp(math.Max(math.Abs(mid), 1.0/32), -24), "threshold %d", i)
	}
}

func TestNF4CodeIsNearestLowerOnTies(t *testing.T) {
	for c, v := range NF4Table {
		require.Equal(t, uint8(c), nf4Code(v), "table value %v", v)
	}
	require.Equal(t, uint8(0), nf4Code(float32(math.NaN())))
	require.Equal(t, uint8(15), nf4Code(float32(math.Inf(1))))
	for i, th := range NF4Thresholds {
		require.Equal(t, uint8(i), nf4Code(th), "x equal to threshold %d takes the lower code", i)
		require.Equal(t, uint8(i+1), nf4Code(math.Nextafter32(th, 2)))
	}
}

// The selftest cases of conformance/gen/make_vectors.py, ported.
func TestTableRoundTripIsExact(t *testing.T) {
	var w []float32
	for rep := 0; rep < 2; rep++ {
		for c := 0; c < 16; c++ {
			w = append(w, NF4Table[c]*0.5)
		}
		for c := 15; c >= 0; c-- {
			w = append(w, NF4Table[c]*0.5)
		}
	}
	q, err := QuantizeNF4(w, [2]int{4, 16}, 64, dtype.F32, false)
	require.NoError(t, err)
	require.Equal(t, []float32{0.5}, q.State.Absmax)
	codes := q.Codes()
	for k := range w {
		require.Equal(t, w[k], NF4Table[codes[k]]*0.5)
	}
	require.Equal(t, w, Dequantize(q))
}

func TestPackingHighNibbleFirst(t *testing.T) {
	w := make([]float32, 64)
	for i, v := range []float32{1.0, -1.0, 0.0, 0.0796, 0.44, -0.2844} {
		w[i] = v * 0.25
	}
	q, err := QuantizeNF4(w, [2]int{8, 8}, 64, dtype.F32, false)
	require.NoError(t, err)
	require.Equal(t, []byte{0xF0, 0x78, 0xC4}, q.Packed[:3])
}

func TestOddCountPadsWithCode7(t *testing.T) {
	q, err := QuantizeNF4([]float32{0.5, -0.25, 0.125}, [2]int{1, 3}, 64, dtype.F32, false)
	require.NoError(t, err)
	require.Len(t, q.Packed, 2)
	require.Equal(t, byte(7), q.Packed[1]&15)
	// An all-zero block has r = Inf, so even the padding is NaN: code 0.
	q, err = QuantizeNF4([]float32{0, 0, 0}, [2]int{3, 1}, 64, dtype.F32, true)
	require.NoError(t, err)
	require.Equal(t, []byte{0, 0}, q.Packed)
	for _, v := range Dequantize(q) {
		require.Zero(t, v)
	}
}

func randNormal(r *rand.Rand, n int, scale float64) []float32 {
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(r.NormFloat64() * scale)
	}
	return w
}

// TestRandomRoundTrip follows the script's selftest: NF4 error of normal
// weights is about 0.1, double quantization adds little, and every code is a
// nearest table entry of w·f32(1/absmax).
func TestRandomRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		d     dtype.DType
		shape [2]int
	}{{dtype.F32, [2]int{257, 100}}, {dtype.BF16, [2]int{96, 40}}, {dtype.F16, [2]int{1000, 300}}, {dtype.BF16, [2]int{300, 200}}} {
		n := c.shape[0] * c.shape[1]
		w := randNormal(r, n, 1/math.Sqrt(float64(c.shape[1])))
		dtype.RoundSlice(c.d, w)
		q1, err := QuantizeNF4(w, c.shape, 64, c.d, false)
		require.NoError(t, err)
		q2, err := QuantizeNF4(w, c.shape, 64, c.d, true)
		require.NoError(t, err)
		require.Equal(t, q1.Packed, q2.Packed, "codes do not depend on double quantization")
		e1, e2 := ref.RelErr(Dequantize(q1), w), ref.RelErr(Dequantize(q2), w)
		require.True(t, e1 > 0.05 && e1 < 0.15, "%v %v nf4 rel err %.4f", c.d, c.shape, e1)
		require.Less(t, math.Abs(e2-e1), 0.02*e1+1e-3, "%v %v nf4-dq rel err %.4f vs %.4f", c.d, c.shape, e2, e1)

		nb := ceilDiv(n, 64)
		require.Len(t, q2.State.Nested.QAbsmax, nb)
		require.Len(t, q2.State.Nested.Absmax, ceilDiv(nb, 256))
		a1, a2 := q1.Absmax(), q2.Absmax()
		for b := range a1 {
			require.Less(t, math.Abs(float64(a2[b]-a1[b]))/float64(a1[b]), 0.02, "block %d", b)
		}
		codes := q1.Codes()
		for k, x := range w {
			xs := float32(x * float32(1/a1[k/64]))
			best := math.Abs(float64(xs) - float64(NF4Table[codes[k]]))
			for _, v := range NF4Table {
				if math.Abs(float64(xs)-float64(v)) < best {
					t.Fatalf("%v %v element %d: code %d is not a nearest entry of %v", c.d, c.shape, k, codes[k], xs)
				}
			}
		}
	}
}

// TestBlocksizesAndShapes covers every blocksize with element counts that
// are odd and not multiples of the block, plus Save/Load.
func TestBlocksizesAndShapes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for bs := MinBlocksize; bs <= MaxBlocksize; bs *= 2 {
		for _, shape := range [][2]int{{1, 1}, {3, 7}, {33, 21}, {17, bs + 3}} {
			n := shape[0] * shape[1]
			w := randNormal(r, n, 0.1)
			for _, dq := range []bool{false, true} {
				q, err := QuantizeNF4(w, shape, bs, dtype.BF16, dq)
				require.NoError(t, err)
				require.NoError(t, q.Validate())
				require.Len(t, q.Packed, (n+1)/2)
				require.Len(t, q.Absmax(), ceilDiv(n, bs))
				got := Dequantize(q)
				if n > 8 {
					require.Less(t, ref.RelErr(got, w), 0.2, "bs %d shape %v dq %v", bs, shape, dq)
				}
				loaded := saveLoad(t, q)
				require.Equal(t, q, loaded)
			}
		}
	}
}

func TestQuantizeRejects(t *testing.T) {
	w := []float32{1, 2, 3, 4}
	_, err := QuantizeNF4(w, [2]int{2, 3}, 64, dtype.F32, false)
	require.ErrorContains(t, err, "shape [2 3] needs 6 values, w has 4")
	_, err = QuantizeNF4(w, [2]int{0, 4}, 64, dtype.F32, false)
	require.ErrorContains(t, err, "shape [0 4]")
	_, err = QuantizeNF4(w, [2]int{2, 2}, 48, dtype.F32, false)
	require.ErrorContains(t, err, "blocksize 48")
	_, err = QuantizeNF4(w, [2]int{2, 2}, 8192, dtype.F32, false)
	require.ErrorContains(t, err, "blocksize 8192")
	_, err = QuantizeNF4(w, [2]int{2, 2}, 64, dtype.U8, false)
	require.ErrorContains(t, err, "u8")
	_, err = QuantizeNF4([]float32{1, float32(math.NaN()), 3, 4}, [2]int{2, 2}, 64, dtype.F32, false)
	require.ErrorContains(t, err, "w[1] (row 0, col 1)")
}

func TestValidateRejects(t *testing.T) {
	q, err := QuantizeNF4(make([]float32, 200), [2]int{10, 20}, 64, dtype.F16, true)
	require.NoError(t, err)
	bad := func(edit func(w *NF4Weight), msg string) {
		c := *q
		c.Packed = append([]byte(nil), q.Packed...)
		ns := *q.State.Nested
		c.State.Nested = &ns
		edit(&c)
		require.ErrorContains(t, c.Validate(), msg)
		require.Panics(t, func() { Dequantize(&c) })
		require.Error(t, DequantizeTo(make([]float32, 200), &c))
	}
	bad(func(w *NF4Weight) { w.Packed = w.Packed[:99] }, "needs 100 packed bytes, got 99")
	bad(func(w *NF4Weight) { w.State.QuantType = "fp4" }, `"fp4"`)
	bad(func(w *NF4Weight) { w.State.Nested.QAbsmax = w.State.Nested.QAbsmax[:3] }, "need 4 8-bit absmax codes, got 3")
	bad(func(w *NF4Weight) { w.State.Nested.Absmax = nil }, "need 1 nested_absmax values, got 0")
	bad(func(w *NF4Weight) { w.State.Nested.Offset = float32(math.Inf(1)) }, "nested_offset")
	bad(func(w *NF4Weight) { w.State.Nested.Code[3] = float32(math.NaN()) }, "nested_quant_map[3]")
	bad(func(w *NF4Weight) { w.State.Nested.Blocksize = 100 }, "nested blocksize 100")
	bad(func(w *NF4Weight) { w.State.Absmax = []float32{1} }, "nested state with 1 float32 absmax")
	bad(func(w *NF4Weight) { w.State.Nested = nil }, "needs 4 absmax values, got 0")
	bad(func(w *NF4Weight) { w.State.Nested = nil; w.State.Absmax = []float32{1, -1, 1, 1} }, "absmax[1] = -1")
	bad(func(w *NF4Weight) { w.State.Code[0] = float32(math.Inf(-1)) }, "quant_map[0]")
	bad(func(w *NF4Weight) { w.State.Shape = [2]int{1 << 30, 1 << 30} }, "at most")
	// Each factor finite, the product not: code 1e30 × absmax 1e30 decoded to Inf.
	bad(func(w *NF4Weight) {
		w.State.Nested = nil
		w.State.Absmax = []float32{1e30, 1, 1, 1}
		w.State.Code[15] = 1e30
	}, "not finite")
	bad(func(w *NF4Weight) {
		for i := range w.State.Nested.Code {
			w.State.Nested.Code[i] = 1
		}
		w.State.Nested.Absmax, w.State.Nested.Offset = []float32{3e38}, 3e38
	}, "decoded absmax")
	require.ErrorContains(t, DequantizeTo(make([]float32, 3), q), "needs dst of 200 values, got 3")
}

func newRand() *rand.Rand { return rand.New(rand.NewPCG(7, 8)) }
