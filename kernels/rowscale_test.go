package kernels

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// TestRowScale: rowscale.comp against float64, and the multiply form bit
// for bit against its f32 emulation (w + alpha·a, times v[i], each one f32
// operation, rounded once to d). The division of the inverse form is the
// driver's, so it is held to the tolerance only. Shapes as the adds', with
// a shrunken grid once so that the shader's loops run.
func TestRowScale(t *testing.T) {
	f := newFixture(t)
	for _, d := range dtype.Floats {
		for si, sh := range addShapes {
			for _, inv := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%dx%d/inv=%v", d, sh[0], sh[1], inv), func(t *testing.T) {
					f := f.inOwn(t)
					if si == len(addShapes)-1 {
						old := addGrid
						addGrid = [2]int{1, 3}
						t.Cleanup(func() { addGrid = old })
					}
					rows, cols := sh[0], sh[1]
					alpha := []float32{1, -1, 0.37}[si%3]
					w0 := f.Random(d, rows*cols, 1)
					a := f.Random(dtype.F32, rows*cols, 0.3)
					v := f.Random(dtype.F32, rows, 1)
					for i := range v {
						v[i] = 0.5 + v[i]*v[i] // away from 0, and ≠ 1
					}
					w := f.Upload(d, w0, rows, cols)
					rec := f.Recorder()
					require.NoError(t, f.eng.RowScale(rec, w, f.Upload(dtype.F32, a, rows, cols), f.Upload(dtype.F32, v, rows), alpha, inv))
					require.NoError(t, rec.Submit())
					got := f.Download(w)
					exact, bits := make([]float64, len(w0)), make([]float64, len(w0))
					for i := range w0 {
						r := i / cols
						if inv {
							exact[i] = w0[i]/v[r] + float64(alpha)*a[i]
							continue
						}
						exact[i] = v[r] * (w0[i] + float64(alpha)*a[i])
						bits[i] = float64(dtype.Round(d, float32(v[r])*(float32(w0[i])+alpha*float32(a[i]))))
					}
					vktest.ExpectClose(t, "w vs float64", got, exact, cols, ref.Tolerance(d).Product)
					if !inv {
						vktest.ExpectClose(t, "w (bits)", got, bits, cols, 0)
					}
				})
			}
		}
	}
}

func TestRowScaleErrors(t *testing.T) {
	f := newFixture(t)
	w := f.Upload(dtype.BF16, f.Random(dtype.BF16, 12, 1), 3, 4)
	a := f.Upload(dtype.F32, f.Random(dtype.F32, 12, 1), 3, 4)
	v := f.Upload(dtype.F32, f.Random(dtype.F32, 3, 1), 3)
	w32 := f.Upload(dtype.F32, f.Random(dtype.F32, 12, 1), 3, 4)
	vAlias, err := w32.View(3) // f32 [3] over w32's first row
	require.NoError(t, err)
	aAlias, err := w32.View(3, 4)
	require.NoError(t, err)
	rec := f.Recorder()
	for _, c := range []struct {
		name    string
		rec     *vk.Recorder
		w, a, v *vk.Tensor
		alpha   float32
		want    string
	}{
		{"nil recorder", nil, w, a, v, 1, "recorder is nil"},
		{"nil w", rec, nil, a, v, 1, "w is nil"},
		{"1-D w", rec, v, f.Upload(dtype.F32, f.Random(dtype.F32, 3, 1), 3), v, 1, "must be 2-D"},
		{"a of w's dtype", rec, w, f.Upload(dtype.BF16, f.Random(dtype.BF16, 12, 1), 3, 4), v, 1, "must be f32 of w's shape"},
		{"a transposed", rec, w, f.Upload(dtype.F32, f.Random(dtype.F32, 12, 1), 4, 3), v, 1, "must be f32 of w's shape"},
		{"v of cols", rec, w, a, f.Upload(dtype.F32, f.Random(dtype.F32, 4, 1), 4), 1, "v f32[4] must be f32[3]"},
		{"v bf16", rec, w, a, f.Upload(dtype.BF16, f.Random(dtype.BF16, 3, 1), 3), 1, "must be f32[3]"},
		{"v aliases w", rec, w32, a, vAlias, 1, "shares memory with v"},
		{"a aliases w", rec, w32, aAlias, v, 1, "shares memory with a"},
		{"alpha NaN", rec, w, a, v, float32(math.NaN()), "not finite"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := f.eng.RowScale(c.rec, c.w, c.a, c.v, c.alpha, false)
			require.ErrorIs(t, err, ErrBadInput)
			require.ErrorContains(t, err, c.want)
		})
	}
	require.NoError(t, rec.Err(), "refusals record nothing")
}
