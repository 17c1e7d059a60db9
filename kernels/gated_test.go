package kernels

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/activation"
	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk/vktest"
)

// The gated MLP's elementwise kernel, forward and backward, against the
// float64 formulas (act(e) rounded to D before the product, as HF models
// do) for every activation and dtype: rows of whole 16-byte words take
// the one-word-per-invocation path, odd rows the one-element path.
func TestGatedPaths(t *testing.T) {
	f := newFixture(t)
	for _, d := range dtype.Floats {
		for _, act := range activation.All() {
			for _, c := range []struct{ rows, row int }{{5, 64}, {3, 37}, {7, 24}} {
				name := fmt.Sprintf("%s/%s/%dx%d", d, act, c.rows, c.row)
				t.Run(name, func(t *testing.T) {
					f := f.inOwn(t)
					n := c.rows * c.row
					ev, gv, dhv := f.Random(d, n, 2), f.Random(d, n, 1), f.Random(d, n, 1)
					eb := f.Upload(d, ev, n).Binding()
					g, dh := f.Upload(d, gv, n), f.Upload(d, dhv, n)
					hF, h, de, dg := f.Poisoned(d, n), f.Poisoned(d, n), f.Poisoned(d, n), f.Poisoned(d, n)
					rec := f.Recorder()
					require.NoError(t, f.eng.Gated(rec, act, false, d, n, c.row, eb, g.Binding(), hF.Binding()))
					require.NoError(t, f.eng.Gated(rec, act, true, d, n, c.row, eb, g.Binding(), dh.Binding(), h.Binding(), de.Binding(), dg.Binding()))
					require.NoError(t, rec.Submit())
					wantH, wantDE, wantDG := make([]float64, n), make([]float64, n), make([]float64, n)
					for i := range n {
						fv := ref.RoundTo(d, []float64{ref.Act(act, ev[i])})[0]
						wantH[i] = fv * gv[i]
						wantDG[i] = dhv[i] * fv
						wantDE[i] = dhv[i] * gv[i] * ref.ActGrad(act, ev[i])
					}
					tol := ref.Tolerance(d).Product
					vktest.ExpectClose(t, "h (forward)", f.Download(hF), ref.RoundTo(d, wantH), c.row, tol)
					vktest.ExpectClose(t, "h (backward)", f.Download(h), ref.RoundTo(d, wantH), c.row, tol)
					vktest.ExpectClose(t, "dg", f.Download(dg), ref.RoundTo(d, wantDG), c.row, tol)
					vktest.ExpectClose(t, "de", f.Download(de), ref.RoundTo(d, wantDE), c.row, tol)
				})
			}
		}
	}
}
