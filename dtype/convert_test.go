package dtype

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// bf16Reference rounds through float64 arithmetic: the two bf16 neighbours of
// f and a tie broken towards the even mantissa.
func bf16Reference(f float32) uint16 {
	b := math.Float32bits(f)
	lo := uint16(b >> 16)
	hi := lo + 1
	dlo := math.Abs(float64(f) - float64(BF16ToFloat32(lo)))
	dhi := math.Abs(float64(BF16ToFloat32(hi)) - float64(f))
	switch {
	case dlo < dhi:
		return lo
	case dhi < dlo:
		return hi
	case lo&1 == 0:
		return lo
	}
	return hi
}

func TestBF16RoundsToNearestEven(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		f := math.Float32frombits(r.Uint32())
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			continue
		}
		if math.Float32bits(f)&0x7fffffff >= 0x7f7f0000 {
			continue // overflow to Inf is tested in TestBF16Specials; the neighbour search cannot model it
		}
		want := bf16Reference(f)
		require.Equalf(t, want, BF16FromFloat32(f), "bf16(%g) bits %08x", f, math.Float32bits(f))
	}
}

func TestBF16Specials(t *testing.T) {
	require.Equal(t, uint16(0x3f80), BF16FromFloat32(1))
	// 1 + 2^-8 is exactly halfway between 1 and 1+2^-7: ties to even (down).
	require.Equal(t, uint16(0x3f80), BF16FromFloat32(1+1.0/256))
	// 1 + 3·2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6: ties to even (up).
	require.Equal(t, uint16(0x3f82), BF16FromFloat32(1+3.0/256))
	require.Equal(t, uint16(0x7f80), BF16FromFloat32(float32(math.Inf(1))))
	require.Equal(t, uint16(0x7f80), BF16FromFloat32(math.MaxFloat32)) // overflows to +Inf
	require.True(t, math.IsNaN(float64(BF16ToFloat32(BF16FromFloat32(float32(math.NaN()))))))
	nan := math.Float32frombits(0x7f800001) // signalling NaN whose payload would truncate to Inf
	require.True(t, math.IsNaN(float64(BF16ToFloat32(BF16FromFloat32(nan)))))
	require.Equal(t, uint16(0x8000), BF16FromFloat32(float32(math.Copysign(0, -1))))
}

func TestF16RoundTrip(t *testing.T) {
	require.Equal(t, float32(1), Round(F16, 1))
	require.Equal(t, float32(65504), Round(F16, 65504))
	require.True(t, math.IsInf(float64(Round(F16, 70000)), 1))
	// 1 + 2^-11 is halfway between 1 and 1+2^-10: ties to even.
	require.Equal(t, float32(1), Round(F16, 1+1.0/2048))
}

func TestEncodeDecode(t *testing.T) {
	xs := []float32{0, 1, -2.5, 3.1415927, 1e-3, -65000}
	for _, d := range Floats {
		b := Encode(d, xs)
		require.Len(t, b, len(xs)*d.Size())
		got := make([]float32, len(xs))
		Decode(d, b, got)
		for i, x := range xs {
			require.Equal(t, Round(d, x), got[i], "%s element %d", d, i)
		}
	}
}

func TestParse(t *testing.T) {
	for _, d := range []DType{F32, F16, BF16, U8} {
		got, err := Parse(d.String())
		require.NoError(t, err)
		require.Equal(t, d, got)
	}
	_, err := Parse("f64")
	require.ErrorContains(t, err, "f64")
}
