package kernels

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk/vktest"
)

// TestColSum: column sums against float64, every dtype, the product form,
// the v scale and both output types, in one pass and split into row
// chunks (the minimum chunk shrunk so that small matrices split, and a
// tall matrix that splits at the real minimum on a GPU's target grid).
func TestColSum(t *testing.T) {
	f := newFixture(t)
	for _, sh := range [][3]int{{37, 70, 0}, {301, 70, 16}, {1500, 130, 0}} {
		rows, cols, minChunk := sh[0], sh[1], sh[2]
		for _, d := range dtype.Floats {
			for _, c := range []struct{ prod, v, out32 bool }{{false, false, false}, {true, true, false}, {false, true, true}, {true, false, true}} {
				name := fmt.Sprintf("%dx%d/chunk%d/%s/prod=%v/v=%v/f32=%v", rows, cols, minChunk, d, c.prod, c.v, c.out32)
				t.Run(name, func(t *testing.T) {
					f := f.inOwn(t)
					if minChunk > 0 {
						old := colSumMinChunk
						colSumMinChunk = minChunk
						t.Cleanup(func() { colSumMinChunk = old })
						require.NotZero(t, f.eng.colSumChunk(rows, ceilDiv(cols, 64)), "the sum must split")
					}
					a := f.Random(d, rows*cols, 1)
					bv := f.Random(d, rows*cols, 1)
					v := f.Random(dtype.F32, cols, 1)
					const alpha = 0.37
					od := d
					if c.out32 {
						od = dtype.F32
					}
					out := f.Upload(od, make([]float64, cols), cols)
					A, B, V := f.Upload(d, a, rows, cols), f.Upload(d, bv, rows, cols), f.Upload(dtype.F32, v, cols)
					if !c.prod {
						B = nil
					}
					if !c.v {
						V = nil
					}
					rec := f.Recorder()
					require.NoError(t, f.eng.ColSum(rec, out, A, B, V, alpha))
					require.NoError(t, rec.Submit())
					want := make([]float64, cols)
					for j := range want {
						for i := 0; i < rows; i++ {
							x := a[i*cols+j]
							if c.prod {
								x *= bv[i*cols+j]
							}
							want[j] += x
						}
						want[j] *= alpha
						if c.v {
							want[j] *= v[j]
						}
					}
					vktest.ExpectClose(t, "out", f.Download(out), ref.RoundTo(od, want), cols, ref.Tolerance(od).Product)
				})
			}
		}
	}
}
