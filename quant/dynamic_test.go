package quant

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDynamicMapProperties(t *testing.T) {
	dm := DynamicMap()
	for i := 1; i < 256; i++ {
		require.Less(t, dm[i-1], dm[i], "index %d", i)
	}
	require.Equal(t, float32(0), dm[127])
	require.Equal(t, float32(1), dm[255])
	require.Equal(t, -dm[254], dm[0])
	require.InDelta(t, 0.99296875, dm[254], 1e-6)
	require.InDelta(t, 5.5e-7, dm[128], 1e-12)
}

// TestDynamicMapMatchesTestdata pins the port to the map stored in every
// double-quantized weight of the conformance vectors, bit for bit.
func TestDynamicMapMatchesTestdata(t *testing.T) {
	dm := DynamicMap()
	seen := 0
	for _, f := range loadTestdata(t) {
		for name := range f.file.Tensors {
			if len(name) < len(keyNestedMap) || name[len(name)-len(keyNestedMap):] != keyNestedMap {
				continue
			}
			got, _, err := f.file.Float32(name)
			require.NoError(t, err)
			for i := range dm {
				require.Equal(t, math.Float32bits(got[i]), math.Float32bits(dm[i]), "%s %s[%d]", f.path, name, i)
			}
			seen++
		}
	}
	require.Greater(t, seen, 5)
}

func TestDQuantizeNearest(t *testing.T) {
	dm := DynamicMap()
	for i, v := range dm {
		require.Equal(t, uint8(i), dQuantize(v, &dm), "map value %d", i)
	}
	require.Equal(t, uint8(0), dQuantize(float32(math.NaN()), &dm))
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 60000; i++ {
		x := float32(r.Float64()*2 - 1)
		if i%6 == 0 {
			x *= 1e-3
		}
		q := dQuantize(x, &dm)
		best := math.Abs(float64(x) - float64(dm[q]))
		for _, v := range dm {
			if math.Abs(float64(x)-float64(v)) < best {
				t.Fatalf("x=%v: code %d (%v) is not a nearest entry, %v is nearer", x, q, dm[q], v)
			}
		}
	}
}

func TestQuantizeBlockwiseZeroBlock(t *testing.T) {
	dm := DynamicMap()
	q, a := quantizeBlockwise(make([]float32, 300), &dm, 256)
	require.Equal(t, []float32{0, 0}, a)
	for _, c := range q {
		require.Equal(t, uint8(0), c) // NaN from 0·Inf, decodes to -0.99·0 = 0
	}
}
