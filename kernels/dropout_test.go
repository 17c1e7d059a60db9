package kernels

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk/vktest"
)

// TestDropoutGenerated: the device's generated mask is DropoutSource.Keep's
// bit for bit, at offsets aligned and not to the four-element draws, and
// across the 32-bit boundary of the counter (its carry), in every mode and
// dtype, with the grid shrunk once so that the invocations stride.
func TestDropoutGenerated(t *testing.T) {
	f := newFixture(t)
	const rows, cols = 9, 13
	offsets := []uint64{0, 1, 3, 1<<34 - 2, 1<<32*5 + 7}
	for _, d := range dtype.Floats {
		for oi, off := range offsets {
			for _, mode := range []shaders.DropoutMode{shaders.DropoutForward, shaders.DropoutResidual, shaders.DropoutAdd} {
				t.Run(fmt.Sprintf("%s/off=%d/mode=%d", d, off, mode), func(t *testing.T) {
					f := f.inOwn(t)
					if oi == len(offsets)-1 {
						old := addGrid
						addGrid = [2]int{1, 2}
						t.Cleanup(func() { addGrid = old })
					}
					src := DropoutSource{P: 0.3, Seed: 0x9E3779B97F4A7C15 + uint64(oi), Offset: off}
					x0, o0 := f.Random(d, rows*cols, 1), f.Random(d, rows*cols, 1)
					x, out := f.Upload(d, x0, rows, cols), f.Upload(d, o0, rows, cols)
					rec := f.Recorder()
					require.NoError(t, f.eng.Dropout(rec, mode, out, x, src))
					require.NoError(t, rec.Submit())
					want := make([]float64, rows*cols)
					kept := 0
					for i := range want {
						var dv float32
						if src.Keep(uint64(i)) {
							dv = float32(x0[i]) * src.Inv()
							kept++
						}
						switch mode {
						case shaders.DropoutForward:
							want[i] = float64(dtype.Round(d, dv))
						case shaders.DropoutResidual:
							want[i] = float64(dtype.Round(d, float32(x0[i])-dv))
						default:
							want[i] = float64(dtype.Round(d, float32(o0[i])+dv))
						}
					}
					require.True(t, kept > 0 && kept < len(want), "the mask keeps %d of %d", kept, len(want))
					vktest.ExpectClose(t, "out", f.Download(out), want, cols, 0)
				})
			}
		}
	}
}
