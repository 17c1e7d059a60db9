package kernels

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/quant/quanttest"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk/vktest"
)

// TestRowSquaresNF4: the row sums of squares of an NF4 weight decoded in
// the kernel equal float64's over the host's dequantized values (each
// rounded to the weight's dtype), and the dense kernel's over the device's
// dequantized copy bit for bit; every dtype, with and without double
// quantization, rows that are not a multiple of anything; and its refusals.
func TestRowSquaresNF4(t *testing.T) {
	f := newFixture(t)
	const out, in, bs = 37, 192, 64
	for _, d := range dtype.Floats {
		for _, dq := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/dq=%v", d, dq), func(t *testing.T) {
				f := f.inOwn(t)
				host, w := quanttest.NF4Weight(f.Fixture, d, out, in, bs, dq)
				got, dense := f.Upload(dtype.F32, make([]float64, out), out), f.Upload(dtype.F32, make([]float64, out), out)
				wd := f.Upload(d, make([]float64, out*in), out, in)
				rec := f.Recorder()
				require.NoError(t, f.eng.RowSquaresNF4(rec, got, w))
				require.NoError(t, quant.DequantizeOnDevice(f.Dev, rec, w, wd))
				rec.Barrier()
				require.NoError(t, f.eng.RowSquares(rec, dense, wd))
				require.NoError(t, rec.Submit())
				vals := quant.Dequantize(host)
				want := make([]float64, out)
				for i, v := range vals {
					x := float64(dtype.Round(d, v))
					want[i/in] += x * x
				}
				g := f.Download(got)
				vktest.ExpectClose(t, "‖W_o‖²", g, want, out, ref.Tolerance(dtype.F32).Product)
				vktest.ExpectClose(t, "‖W_o‖² vs the dense kernel", g, f.Download(dense), out, 0)
			})
		}
	}
	t.Run("refusals", func(t *testing.T) {
		_, w := quanttest.NF4Weight(f.Fixture, dtype.BF16, 8, 64, 64, false)
		rec := f.Recorder()
		bad := *w
		bad.Blocksize = 0
		for name, err := range map[string]error{
			"nil recorder": f.eng.RowSquaresNF4(nil, f.Upload(dtype.F32, make([]float64, 8), 8), w),
			"nil weight":   f.eng.RowSquaresNF4(rec, f.Upload(dtype.F32, make([]float64, 8), 8), nil),
			"out length":   f.eng.RowSquaresNF4(rec, f.Upload(dtype.F32, make([]float64, 7), 7), w),
			"out dtype":    f.eng.RowSquaresNF4(rec, f.Upload(dtype.BF16, make([]float64, 8), 8), w),
			"blocksize":    f.eng.RowSquaresNF4(rec, f.Upload(dtype.F32, make([]float64, 8), 8), &bad),
		} {
			require.ErrorIs(t, err, ErrBadInput, name)
		}
		require.NoError(t, rec.Submit())
	})
}
