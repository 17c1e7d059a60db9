package kernels

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
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

// TestDropoutExpand: out += D(s·G·A) against float64 with the host's mask
// (generated at an unaligned offset, and explicit), every dtype, a rank
// that is not a power of two, odd shapes; and its refusals.
func TestDropoutExpand(t *testing.T) {
	f := newFixture(t)
	const m, n, r, s = 11, 21, 5, 0.7
	for _, d := range dtype.Floats {
		for _, explicit := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/explicit=%v", d, explicit), func(t *testing.T) {
				f := f.inOwn(t)
				src := DropoutSource{P: 0.25, Seed: 77, Offset: 6}
				keep := make([]bool, m*n)
				for i := range keep {
					keep[i] = src.Keep(uint64(i))
				}
				if explicit {
					bits := make([]byte, m*n)
					for i := range bits {
						keep[i] = i%3 != 0
						if keep[i] {
							bits[i] = 1
						}
					}
					mask, err := f.Dev.NewTensor(dtype.U8, m, n)
					require.NoError(t, err)
					t.Cleanup(mask.Release)
					require.NoError(t, mask.UploadBytes(bits))
					src.Mask = mask
				}
				o0, g, a := f.Random(d, m*n, 1), f.Random(dtype.F32, m*r, 1), f.Random(d, r*n, 1)
				out := f.Upload(d, o0, m, n)
				rec := f.Recorder()
				require.NoError(t, f.eng.DropoutExpand(rec, out, f.Upload(dtype.F32, g, m, r), f.Upload(d, a, r, n), s, src))
				require.NoError(t, rec.Submit())
				want := append([]float64(nil), o0...)
				for i := range want {
					if !keep[i] {
						continue
					}
					row, col := i/n, i%n
					t := 0.0
					for j := 0; j < r; j++ {
						t += g[row*r+j] * a[j*n+col]
					}
					want[i] += s * t * float64(src.Inv())
				}
				vktest.ExpectClose(t, "out", f.Download(out), ref.RoundTo(d, want), n, ref.Tolerance(d).Product)
			})
		}
	}
	t.Run("refusals", func(t *testing.T) {
		out := f.Upload(dtype.BF16, f.Random(dtype.BF16, m*n, 1), m, n)
		g := f.Upload(dtype.F32, f.Random(dtype.F32, m*r, 1), m, r)
		a := f.Upload(dtype.BF16, f.Random(dtype.BF16, r*n, 1), r, n)
		a16 := f.Upload(dtype.F16, f.Random(dtype.F16, r*n, 1), r, n)
		gT := f.Upload(dtype.F32, f.Random(dtype.F32, m*r, 1), r, m)
		rec := f.Recorder()
		src := DropoutSource{P: 0.1}
		for name, err := range map[string]error{
			"A dtype":  f.eng.DropoutExpand(rec, out, g, a16, s, src),
			"G shape":  f.eng.DropoutExpand(rec, out, gT, a, s, src),
			"scale":    f.eng.DropoutExpand(rec, out, g, a, float32(math.Inf(1)), src),
			"p":        f.eng.DropoutExpand(rec, out, g, a, s, DropoutSource{P: 1}),
			"nil":      f.eng.DropoutExpand(nil, out, g, a, s, src),
			"old call": f.eng.Dropout(rec, shaders.DropoutExpand, out, out, src),
		} {
			require.ErrorIs(t, err, ErrBadInput, name)
		}
		require.NoError(t, rec.Submit())
	})
}
