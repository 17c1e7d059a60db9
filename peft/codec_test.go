package peft

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
)

// TestCodecExact: every f16 and bf16 bit pattern, NaNs included, and
// random f32 patterns survive decodeExact then encodeExact unchanged.
func TestCodecExact(t *testing.T) {
	for _, d := range []dtype.DType{dtype.F16, dtype.BF16} {
		raw := make([]byte, 2*65536)
		for h := range 65536 {
			binary.LittleEndian.PutUint16(raw[2*h:], uint16(h))
		}
		require.True(t, bytes.Equal(raw, encodeExact(d, decodeExact(d, raw))), d)
	}
	raw := make([]byte, 4*4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 4096 {
		binary.LittleEndian.PutUint32(raw[4*i:], rng.Uint32())
	}
	binary.LittleEndian.PutUint32(raw, 0x7f800001) // a signalling NaN
	require.True(t, bytes.Equal(raw, encodeExact(dtype.F32, decodeExact(dtype.F32, raw))))
}

// TestCodecRounds: values a dtype does not hold round as dtype.Encode does.
func TestCodecRounds(t *testing.T) {
	xs := []float32{1.0 / 3, -2.7, 65519, 1e-8, float32(math.Inf(-1)), float32(math.NaN())}
	for _, d := range []dtype.DType{dtype.F16, dtype.BF16} {
		got := decodeExact(d, encodeExact(d, xs))
		for i, x := range xs {
			want := dtype.Round(d, x)
			if math.IsNaN(float64(want)) {
				require.True(t, math.IsNaN(float64(got[i])), "%v %v", d, x)
				continue
			}
			require.Equal(t, want, got[i], "%v %v", d, x)
		}
		ys := append([]float32(nil), xs...)
		roundExact(d, ys)
		require.Equal(t, len(xs), len(ys))
		require.Equal(t, got[0], ys[0])
	}
}
