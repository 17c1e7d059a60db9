package kernels

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/activation"
	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/quant/quanttest"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// form is one of the three matmul shapes LoRA uses.
type form struct {
	name           string
	transA, transB bool
}

var forms = []form{
	{"X·Wᵀ", false, true}, // forward: W stored [N,K]
	{"G·W", false, false}, // dX: W stored [K,N]
	{"Gᵀ·X", true, false}, // dA/dB: G stored [K,M]
}

// shapes covers {1,7,64,129,1000} in every position, with sizes that are
// not tile multiples, M = 1 and K = 1, while keeping lavapipe time small.
var shapes = [][3]int{
	{1, 1, 1}, {7, 64, 129}, {129, 7, 64}, {64, 129, 7}, {1, 1000, 129}, {1000, 7, 1},
	{7, 1, 1000}, {129, 1000, 64}, {1000, 129, 7}, {64, 7, 1000}, {33, 65, 17},
}

func storedShape(trans bool, rows, cols int) []int {
	if trans {
		return []int{cols, rows}
	}
	return []int{rows, cols}
}

func TestMatmulAgainstReference(t *testing.T) {
	f := newFixture(t)
	for _, d := range dtype.Floats {
		for _, fm := range forms {
			for _, s := range shapes {
				m, n, k := s[0], s[1], s[2]
				t.Run(fmt.Sprintf("%s/%s/%dx%dx%d", d, fm.name, m, n, k), func(t *testing.T) {
					f := f.in(t)
					a := f.Random(d, m*k, 1)
					b := f.Random(d, k*n, 1)
					at := f.Upload(d, a, storedShape(fm.transA, m, k)...)
					bt := f.Upload(d, b, storedShape(fm.transB, k, n)...)
					c := f.Poisoned(d, m, n)
					A, B := Dense(at), Dense(bt)
					if fm.transA {
						A = A.T()
					}
					if fm.transB {
						B = B.T()
					}
					rec := f.Recorder()
					require.NoError(t, f.eng.MatmulTo(rec, c, A, B, 1, 0))
					require.NoError(t, rec.Submit())
					want := ref.RoundTo(d, ref.Matmul(a, b, m, n, k, fm.transA, fm.transB))
					vktest.ExpectClose(t, "C", f.Download(c), want, n, ref.Tolerance(d).Product)
				})
			}
		}
	}
}

func TestMatmulAlphaBetaAndSplitK(t *testing.T) {
	f := newFixture(t)
	for _, d := range dtype.Floats {
		// 7×16 outputs over K = 5000: one tile, so split-K engages.
		for _, s := range [][3]int{{7, 16, 5000}, {65, 33, 47}} {
			m, n, k := s[0], s[1], s[2]
			t.Run(fmt.Sprintf("%s/%dx%dx%d", d, m, n, k), func(t *testing.T) {
				f := f.in(t)
				a := f.Random(d, m*k, 1)
				b := f.Random(d, n*k, 1)
				c0 := f.Random(d, m*n, 1)
				c := f.Upload(d, c0, m, n)
				rec := f.Recorder()
				const alpha, beta = 0.37, -1.5
				require.NoError(t, f.eng.MatmulTo(rec, c, Dense(f.Upload(d, a, m, k)), Dense(f.Upload(d, b, n, k)).T(), alpha, beta))
				require.NoError(t, rec.Submit())
				want := append([]float64(nil), c0...)
				ref.MatmulAcc(want, a, b, m, n, k, false, true, alpha, beta)
				vktest.ExpectClose(t, "C", f.Download(c), ref.RoundTo(d, want), n, ref.Tolerance(d).Product)
			})
		}
	}
}

func TestMatmulFusedSecondProduct(t *testing.T) {
	f := newFixture(t)
	for _, d := range dtype.Floats {
		m, n, k, r := 37, 70, 45, 7
		x := f.Random(d, m*k, 1)
		w := f.Random(d, n*k, 1)
		xa := f.Random(dtype.F32, m*r, 1)
		bm := f.Random(d, n*r, 1)
		c := f.Poisoned(d, m, n)
		rec := f.Recorder()
		const s = 0.37
		err := f.eng.Gemm(rec, Gemm{C: c, A: Dense(f.Upload(d, x, m, k)), B: Dense(f.Upload(d, w, n, k)).T(),
			A2: Dense(f.Upload(dtype.F32, xa, m, r)), B2: Dense(f.Upload(d, bm, n, r)).T(), Alpha: 1, Alpha2: s})
		require.NoError(t, err)
		require.NoError(t, rec.Submit())
		want := ref.Matmul(x, w, m, n, k, false, true)
		ref.MatmulAcc(want, xa, bm, m, n, r, false, true, s, 1)
		vktest.ExpectClose(t, d.String(), f.Download(c), ref.RoundTo(d, want), n, ref.Tolerance(d).Product)
	}
}

func TestMatmulBadInput(t *testing.T) {
	f := newFixture(t)
	a := f.Upload(dtype.F32, f.Random(dtype.F32, 12, 1), 3, 4)
	b := f.Upload(dtype.F32, f.Random(dtype.F32, 10, 1), 5, 2)
	bh := f.Upload(dtype.F16, f.Random(dtype.F16, 8, 1), 4, 2)
	bb := f.Upload(dtype.BF16, f.Random(dtype.BF16, 8, 1), 4, 2)
	c := f.Poisoned(dtype.F32, 3, 2)
	ch := f.Poisoned(dtype.F16, 3, 2)
	u8, err := f.Dev.NewTensor(dtype.U8, 4, 2)
	require.NoError(t, err)
	f.Keep(u8)
	rec := f.Recorder()
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"u8 B", f.eng.MatmulTo(rec, c, Dense(a), Dense(u8), 1, 0), "must be f32, f16 or bf16"},
		{"inner", f.eng.MatmulTo(rec, c, Dense(a), Dense(b), 1, 0), "inner dimensions differ"},
		{"nil A", f.eng.MatmulTo(rec, c, Dense(nil), Dense(bh), 1, 0), "A is nil"},
		{"out shape", f.eng.MatmulTo(rec, f.Poisoned(dtype.F32, 2, 2), Dense(a), Dense(bh), 1, 0), "want [3,2]"},
		{"dtype mix", f.eng.MatmulTo(rec, ch, Dense(a), Dense(bb), 1, 0), "mixed dtypes"},
		{"nan alpha", f.eng.MatmulTo(rec, c, Dense(a), Dense(bh), float32(math.NaN()), 0), "not finite"},
		{"nil rec", f.eng.MatmulTo(nil, c, Dense(a), Dense(bh), 1, 0), "recorder is nil"},
	}
	for _, tc := range cases {
		require.ErrorIs(t, tc.err, ErrBadInput, tc.name)
		require.ErrorContains(t, tc.err, tc.want, tc.name)
	}
	// Still usable: a valid f16 matmul into f32 works after the errors.
	require.NoError(t, f.eng.MatmulTo(rec, ch, Dense(f.Upload(dtype.F16, f.Random(dtype.F16, 12, 1), 3, 4)), Dense(bh), 1, 0))
	require.NoError(t, rec.Submit())
}

// Split-K into an f32 output from f16/bf16 operands: the LoRA down
// projection x·Aᵀ [M, r] with a long K. (The reduction once took the layer
// dtype's variant and wrote bf16 bits into the f32 output; only GPUs that
// split at K ≥ 256 saw it.)
func TestMatmulSplitKIntoF32(t *testing.T) {
	f := newFixture(t)
	for _, d := range []dtype.DType{dtype.F16, dtype.BF16} {
		m, n, k := 9, 16, 4000
		x := f.Random(d, m*k, 1)
		a := f.Random(d, n*k, 1)
		c := f.Poisoned(dtype.F32, m, n)
		rec := f.Recorder()
		require.NoError(t, f.eng.MatmulTo(rec, c, Dense(f.Upload(d, x, m, k)), Dense(f.Upload(d, a, n, k)).T(), 1, 0))
		require.NoError(t, rec.Submit())
		vktest.ExpectClose(t, d.String(), f.Download(c), ref.Matmul(x, a, m, n, k, false, true), n, ref.Tolerance(dtype.F32).Product)
	}
}

// Kernels that loop over rows by the grid height (the split-K reduction and
// the gated MLP kernels) give the same bits when the grid is capped far below
// the row count, as it is on devices for M beyond their 65535-group limit.
func TestGridRowsCapped(t *testing.T) {
	f := newFixture(t)
	const d, m, i = dtype.BF16, 37, 40
	e := f.Upload(d, f.Random(d, m*i, 1), m, i)
	g := f.Upload(d, f.Random(d, m*i, 1), m, i)
	dh := f.Upload(d, f.Random(d, m*i, 1), m, i)
	a := f.Upload(d, f.Random(d, 7*5000, 1), 7, 5000)
	b := f.Upload(d, f.Random(d, 16*5000, 1), 16, 5000)
	run := func(rowCap int) []*vk.Tensor {
		gridRowCap = rowCap
		defer func() { gridRowCap = 0 }()
		h, h2, de, dg := f.Poisoned(d, m, i), f.Poisoned(d, m, i), f.Poisoned(d, m, i), f.Poisoned(d, m, i)
		rec := f.Recorder()
		require.NoError(t, f.eng.Gated(rec, activation.GEGLUTanh, false, d, m*i, i, e.Binding(), g.Binding(), h.Binding()))
		require.NoError(t, f.eng.Gated(rec, activation.GEGLUTanh, true, d, m*i, i,
			e.Binding(), g.Binding(), dh.Binding(), h2.Binding(), de.Binding(), dg.Binding()))
		c := f.Poisoned(dtype.F32, 7, 16) // 7×16 over K = 5000: split-K
		require.NoError(t, f.eng.MatmulTo(rec, c, Dense(a), Dense(b).T(), 1, 0))
		require.NoError(t, rec.Submit())
		return []*vk.Tensor{h, h2, de, dg, c}
	}
	got, want := run(2), run(0)
	f.RequireSameTensors("grid capped at 2 rows", got, want)
	// The product really splits K, so its reduction looped over rows.
	p, err := f.eng.problem(&Gemm{C: got[4], A: Dense(a), B: Dense(b).T(), Alpha: 1})
	require.NoError(t, err)
	pl, _ := f.eng.plan(p)
	require.Greater(t, pl.splits, 1)
}

// An output that shares memory with an input is refused before anything
// is recorded (it once returned relative errors of 4 to 259 and no error),
// and the dispatcher stays usable.
func TestMatmulAliasRefused(t *testing.T) {
	f := newFixture(t)
	const d = dtype.F16
	a := f.Upload(d, f.Random(d, 64*64, 1), 64, 64)
	b := f.Upload(d, f.Random(d, 64*64, 1), 64, 64)
	top, err := b.View(32, 64) // the first rows of b
	require.NoError(t, err)
	rec := f.Recorder()
	for _, c := range []struct {
		name string
		g    Gemm
		want string
	}{
		{"C is A", Gemm{C: a, A: Dense(a), B: Dense(b), Alpha: 1}, "shares memory with A"},
		{"C is Bᵀ", Gemm{C: b, A: Dense(a), B: Dense(b).T(), Alpha: 1}, "shares memory with B"},
		{"C a view of B", Gemm{C: top, A: Dense(f.Upload(d, f.Random(d, 32*64, 1), 32, 64)), B: Dense(b), Alpha: 1}, "shares memory with B"},
	} {
		err := f.eng.Gemm(rec, c.g)
		require.ErrorIs(t, err, ErrBadInput, c.name)
		require.ErrorContains(t, err, c.want, c.name)
	}
	require.Zero(t, rec.Dispatches())
	out := f.Poisoned(d, 64, 64)
	require.NoError(t, f.eng.MatmulTo(rec, out, Dense(a), Dense(b), 1, 0))
	require.NoError(t, rec.Submit())
}

// A hand-built NF4 weight whose fields disagree with its buffers is
// refused by name (it once made the kernel read past the buffers, and
// Blocksize 0 divided by zero in the shader).
func TestMatmulNF4FieldsChecked(t *testing.T) {
	f := newFixture(t)
	const d = dtype.F16
	_, good := quanttest.NF4Weight(f.Fixture, d, 64, 128, 64, false)
	x := f.Upload(d, f.Random(d, 8*128, 1), 8, 128)
	rec := f.Recorder()
	for name, mut := range map[string]func(w *quant.DeviceNF4){
		"blocksize 0":    func(w *quant.DeviceNF4) { w.Blocksize = 0 },
		"rows too many":  func(w *quant.DeviceNF4) { w.Out = 4096 },
		"blocks too few": func(w *quant.DeviceNF4) { w.Blocksize = 32 },
		"dtype u8":       func(w *quant.DeviceNF4) { w.DType = dtype.U8 },
	} {
		w := *good
		mut(&w)
		c := f.Poisoned(d, 8, w.Out)
		err := f.eng.MatmulTo(rec, c, Dense(x), NF4(&w).T(), 1, 0)
		require.ErrorIs(t, err, ErrBadInput, name)
		require.ErrorContains(t, err, "quant: NF4 weight", name)
	}
	require.NoError(t, good.Check())
	c := f.Poisoned(d, 8, 64)
	require.NoError(t, f.eng.MatmulTo(rec, c, Dense(x), NF4(good).T(), 1, 0))
	require.NoError(t, rec.Submit())
}
