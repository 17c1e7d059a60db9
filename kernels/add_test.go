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

// wantAdd is what add.comp must store, bit for bit: the product and the sum
// each one f32 operation, then one round to nearest even to d.
func wantAdd(d dtype.DType, dst, src []float64, alpha float32) []float64 {
	out := make([]float64, len(dst))
	for i := range dst {
		t := alpha * float32(src[i])
		out[i] = float64(dtype.Round(d, float32(dst[i])+t))
	}
	return out
}

// wantBias is add_bias's result for y [rows, len(bias)], bit for bit.
func wantBias(d dtype.DType, y, bias []float64) []float64 {
	out := make([]float64, len(y))
	for i := range y {
		out[i] = float64(dtype.Round(d, float32(y[i])+float32(bias[i%len(bias)])))
	}
	return out
}

// exact64 is the float64 sum dst + alpha·src (or the row bias), unrounded:
// the reference the stored result must be within a rounding of.
func exact64(dst, src []float64, alpha float64, cols int, bias bool) []float64 {
	out := make([]float64, len(dst))
	for i := range dst {
		if bias {
			out[i] = dst[i] + src[i%cols]
		} else {
			out[i] = dst[i] + alpha*src[i]
		}
	}
	return out
}

// expectAdd checks a result bit for bit against the f32 emulation and
// within the dtype's tolerance of float64.
func (f *fixture) expectAdd(what string, d dtype.DType, got *vk.Tensor, bits, exact []float64, cols int) {
	f.T.Helper()
	g := f.Download(got)
	vktest.ExpectClose(f.T, what+" vs float64", g, exact, cols, ref.Tolerance(d).Product)
	vktest.ExpectClose(f.T, what+" (bits)", g, bits, cols, 0)
	for i := range g {
		if math.Float64bits(g[i]) != math.Float64bits(bits[i]) {
			f.T.Fatalf("%s: [%d] = %v, want %v (bit for bit)", what, i, g[i], bits[i])
		}
	}
}

// bytes makes a u8 tensor [n], a dtype the add kernels lack.
func (f *fixture) bytes(n int) *vk.Tensor {
	u, err := f.Dev.NewTensor(dtype.U8, n)
	require.NoError(f.T, err)
	f.Keep(u)
	return u
}

// addShapes are [rows, cols]: a single element, M = 1, odd sizes, and
// column counts on both sides of the 256-wide workgroup.
var addShapes = [][2]int{{1, 1}, {1, 300}, {7, 13}, {37, 257}, {70, 45}}

func TestAddTo(t *testing.T) {
	f := newFixture(t)
	for _, d := range dtype.Floats {
		for si, sh := range addShapes {
			alpha := []float32{1, -0.37, 2.5}[si%3]
			t.Run(fmt.Sprintf("%s/%dx%d/alpha%g", d, sh[0], sh[1], alpha), func(t *testing.T) {
				f := f.in(t)
				n := sh[0] * sh[1]
				// src spans a wider range than dst, so sums round in every dtype.
				dst, src := f.Random(d, n, 1), f.Random(d, n, 3)
				acc, g := f.Upload(d, dst, sh[0], sh[1]), f.Upload(d, src, sh[0], sh[1])
				rec := f.Recorder()
				require.NoError(t, f.eng.AddTo(rec, acc, g, alpha))
				require.NoError(t, rec.Submit())
				f.expectAdd("dst", d, acc, wantAdd(d, dst, src, alpha), exact64(dst, src, float64(alpha), sh[1], false), sh[1])
				require.Equal(t, src, f.Download(g), "src is read only")
			})
		}
	}
}

// TestAddToAccumulates: repeated adds into one tensor with barriers between
// them (the autograd pattern), and src bound over dst (dst doubles).
func TestAddToAccumulates(t *testing.T) {
	f := newFixture(t)
	for _, d := range dtype.Floats {
		t.Run(d.String(), func(t *testing.T) {
			f := f.in(t)
			const m, n = 9, 31
			dst := f.Random(d, m*n, 1)
			srcs := [][]float64{f.Random(d, m*n, 1), f.Random(d, m*n, 1), f.Random(d, m*n, 1)}
			acc := f.Upload(d, dst, m, n)
			rec := f.Recorder()
			want := dst
			for _, s := range srcs {
				require.NoError(t, f.eng.AddTo(rec, acc, f.Upload(d, s, m, n), 1))
				rec.Barrier()
				want = wantAdd(d, want, s, 1)
			}
			require.NoError(t, f.eng.AddTo(rec, acc, acc, 1))
			require.NoError(t, rec.Submit())
			want = wantAdd(d, want, want, 1)
			exact := dst
			for _, s := range srcs {
				exact = exact64(exact, s, 1, n, false)
			}
			f.expectAdd("Σ", d, acc, want, exact64(exact, exact, 1, n, false), n)
		})
	}
}

func TestAddBiasTo(t *testing.T) {
	f := newFixture(t)
	for _, d := range dtype.Floats {
		for _, sh := range addShapes {
			t.Run(fmt.Sprintf("%s/%dx%d", d, sh[0], sh[1]), func(t *testing.T) {
				f := f.in(t)
				y, b := f.Random(d, sh[0]*sh[1], 1), f.Random(d, sh[1], 2)
				yt, bt := f.Upload(d, y, sh[0], sh[1]), f.Upload(d, b, sh[1])
				rec := f.Recorder()
				require.NoError(t, f.eng.AddBiasTo(rec, yt, bt))
				require.NoError(t, rec.Submit())
				f.expectAdd("Y", d, yt, wantBias(d, y, b), exact64(y, b, 0, sh[1], true), sh[1])
			})
		}
	}
}

// AddScaledBiasTo adds alpha·bias: the product and the sum each one f32
// rounding, then one rounding to the dtype; a non-finite alpha is refused.
func TestAddScaledBiasTo(t *testing.T) {
	f := newFixture(t)
	const alpha = float32(0.37)
	for _, d := range dtype.Floats {
		t.Run(d.String(), func(t *testing.T) {
			f := f.in(t)
			const m, n = 5, 77
			y, b := f.Random(d, m*n, 1), f.Random(d, n, 2)
			yt, bt := f.Upload(d, y, m, n), f.Upload(d, b, n)
			rec := f.Recorder()
			require.NoError(t, f.eng.AddScaledBiasTo(rec, yt, bt, alpha))
			require.NoError(t, rec.Submit())
			want, exact := make([]float64, len(y)), make([]float64, len(y))
			for i := range y {
				want[i] = float64(dtype.Round(d, float32(y[i])+alpha*float32(b[i%n])))
				exact[i] = y[i] + float64(alpha)*b[i%n]
			}
			f.expectAdd("Y", d, yt, want, exact, n)
			rec = f.Recorder()
			err := f.eng.AddScaledBiasTo(rec, yt, bt, float32(math.Inf(1)))
			require.ErrorIs(t, err, ErrBadInput)
			require.ErrorContains(t, err, "kernels: AddScaledBiasTo: alpha +Inf is not finite")
		})
	}
}

// TestAddLoops shrinks the grid to 2×3 workgroups so that both loops of
// add.comp (columns past gx·256, rows past gy) run on small tensors, and
// adds a bias over more rows than any device's grid y extent (65535)
// with the default grid.
func TestAddLoops(t *testing.T) {
	f := newFixture(t)
	t.Run("small grid", func(t *testing.T) {
		f := f.in(t)
		saved := addGrid
		addGrid = [2]int{2, 3}
		t.Cleanup(func() { addGrid = saved })
		for _, d := range dtype.Floats {
			const m, n = 11, 1301 // 1301 > 2·256 columns, 11 > 3 rows
			y, b, s := f.Random(d, m*n, 1), f.Random(d, n, 1), f.Random(d, m*n, 1)
			yt, st := f.Upload(d, y, m, n), f.Upload(d, s, m, n)
			rec := f.Recorder()
			require.NoError(t, f.eng.AddBiasTo(rec, yt, f.Upload(d, b, n)))
			rec.Barrier()
			require.NoError(t, f.eng.AddTo(rec, yt, st, 0.5))
			require.NoError(t, rec.Submit())
			yb := wantBias(d, y, b)
			f.expectAdd(d.String()+" Y+b+s/2", d, yt, wantAdd(d, yb, s, 0.5),
				exact64(exact64(y, b, 0, n, true), s, 0.5, n, false), n)
		}
	})
	t.Run("many rows", func(t *testing.T) {
		f := f.in(t)
		const m, n = 70001, 3
		d := dtype.F32
		y, b := f.Random(d, m*n, 1), f.Random(d, n, 1)
		yt := f.Upload(d, y, m, n)
		rec := f.Recorder()
		require.NoError(t, f.eng.AddBiasTo(rec, yt, f.Upload(d, b, n)))
		require.NoError(t, rec.Submit())
		f.expectAdd("Y", d, yt, wantBias(d, y, b), exact64(y, b, 0, n, true), n)
	})
	t.Run("many elements", func(t *testing.T) {
		// More elements than 65535 workgroups of 256 cover: a 1-D grid of one
		// element per invocation could not be dispatched. About 2 s on lavapipe.
		if testing.Short() {
			t.Skip("-short: 16.8M elements")
		}
		f := f.in(t)
		const n = 65535*addWG + 1001
		d := dtype.BF16
		dst, src := f.Random(d, n, 1), f.Random(d, n, 1)
		acc := f.Upload(d, dst, n)
		rec := f.Recorder()
		require.NoError(t, f.eng.AddTo(rec, acc, f.Upload(d, src, n), -2))
		require.NoError(t, rec.Submit())
		f.expectAdd("dst", d, acc, wantAdd(d, dst, src, -2), exact64(dst, src, -2, 0, false), 0)
	})
}

// TestAddBadInput: every bad argument is an ErrBadInput naming it, nothing
// is recorded, and the engine and recorder keep working.
func TestAddBadInput(t *testing.T) {
	f := newFixture(t)
	d := dtype.F32
	x := f.Upload(d, f.Random(d, 15, 1), 3, 5)
	y := f.Upload(d, f.Random(d, 15, 1), 3, 5)
	released := f.Upload(d, f.Random(d, 15, 1), 3, 5)
	released.Release()
	rec := f.Recorder()
	for _, c := range []struct {
		name     string
		dst, src *vk.Tensor
		alpha    float32
		want     string
	}{
		{"nil dst", nil, x, 1, "dst is nil or released"},
		{"released src", x, released, 1, "src is nil or released"},
		{"shape", x, f.Upload(d, f.Random(d, 15, 1), 5, 3), 1, "src f32[5 3] must have the shape and dtype of dst f32[3 5]"},
		{"dtype", x, f.Upload(dtype.BF16, f.Random(dtype.BF16, 15, 1), 3, 5), 1, "src bf16[3 5] must have the shape and dtype of dst f32[3 5]"},
		{"u8", f.bytes(8), f.bytes(8), 1, "dst u8[8] must be f32, f16 or bf16"},
		{"alpha", x, y, float32(math.Inf(-1)), "alpha -Inf is not finite"},
	} {
		err := f.eng.AddTo(rec, c.dst, c.src, c.alpha)
		require.ErrorIs(t, err, ErrBadInput, c.name)
		require.ErrorContains(t, err, "kernels: AddTo: "+c.want, c.name)
	}
	require.ErrorIs(t, f.eng.AddTo(nil, x, y, 1), ErrBadInput)
	for _, c := range []struct {
		name    string
		y, bias *vk.Tensor
		want    string
	}{
		{"1-D Y", f.Upload(d, make([]float64, 5), 5), f.Upload(d, make([]float64, 5), 5), "Y f32[5] must be 2-D [M,N]"},
		{"bias width", x, f.Upload(d, make([]float64, 3), 3), "bias f32[3] must be 1-D f32[5] for Y f32[3 5]"},
		{"bias 2-D", x, f.Upload(d, make([]float64, 5), 1, 5), "bias f32[1 5] must be 1-D f32[5] for Y f32[3 5]"},
		{"bias dtype", x, f.Upload(dtype.F16, make([]float64, 5), 5), "bias f16[5] must be 1-D f32[5] for Y f32[3 5]"},
		{"nil bias", x, nil, "bias of Y f32[3 5] is nil or released"},
	} {
		err := f.eng.AddBiasTo(rec, c.y, c.bias)
		require.ErrorIs(t, err, ErrBadInput, c.name)
		require.ErrorContains(t, err, "kernels: AddBiasTo: "+c.want, c.name)
	}
	require.Zero(t, rec.Dispatches(), "a rejected call records nothing")
	want := wantAdd(d, f.Download(x), f.Download(y), 1)
	require.NoError(t, f.eng.AddTo(rec, x, y, 1))
	require.NoError(t, rec.Submit())
	require.Equal(t, want, f.Download(x))
}

// New refuses a nil device and a released one.
func TestNewRefusesReleasedDevice(t *testing.T) {
	_, err := New(nil, Options{})
	require.ErrorIs(t, err, ErrBadInput)
	vktest.Device(t) // a device exists (and the shared instance with it)
	dev, err := vk.Open(vk.Options{})
	require.NoError(t, err)
	require.NoError(t, dev.Release())
	_, err = New(dev, Options{})
	require.ErrorIs(t, err, vk.ErrReleased)
}
