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

// A product recorded as column slabs of C (C and B2 offsets, C's row
// stride wider than the slab) equals the whole product: the fused term
// (rank 5, both B2 layouts) and beta·C included. On every kernel the
// device runs: the scalar one everywhere, the cooperative ones where the
// device has them (slabs of 64 columns or more; narrower ones are scalar).
func TestGemmColumnSlabs(t *testing.T) {
	f := newFixture(t)
	const d = dtype.BF16
	paths := []string{""}
	if f.eng.CoopMat(d) {
		paths = append(paths, coopPaths(t, f, d)...)
	}
	for _, path := range paths {
		for _, fm := range forms[:2] {
			t.Run(fm.name+path, func(t *testing.T) {
				defer f.eng.usePath(path)()
				f.eng.opt.DisableCoopMat = path == ""
				defer func() { f.eng.opt.DisableCoopMat = false }()
				columnSlabs(t, f.in(t), d, fm)
			})
		}
	}
}

func columnSlabs(t *testing.T, f *fixture, d dtype.DType, fm form) {
	const m, n, k, r = 70, 150, 56, 5
	x := f.Random(d, m*k, 1)
	w := f.Random(d, n*k, 1)
	xa := f.Random(dtype.F32, m*r, 1)
	lb := f.Random(d, n*r, 1)
	c0 := f.Random(d, m*n, 1)
	B := Dense(f.Upload(d, w, storedShape(fm.transB, k, n)...))
	if fm.transB {
		B = B.T()
	}
	// B2 is Bᵀ of an [n, r] matrix in the X·Wᵀ form and an [r, n] matrix
	// in the G·W one, as the layers pass them.
	B2 := Dense(f.Upload(d, lb, n, r)).T()
	if !fm.transB {
		B2 = Dense(f.Upload(d, lb, r, n))
	}
	c := f.Upload(d, c0, m, n)
	g := Gemm{C: c, A: Dense(f.Upload(d, x, m, k)), B: B, A2: Dense(f.Upload(dtype.F32, xa, m, r)), B2: B2,
		Alpha: 0.7, Alpha2: 0.37, Beta: -0.5}
	rec := f.Recorder()
	_, b2cs := g.B2.strides()
	for _, sl := range [][2]int{{0, 64}, {64, 64}, {128, 22}} {
		n0, s := sl[0], sl[1]
		sub := g
		sub.B = f.denseSlab(d, w, fm.transB, n, k, n0, s)
		p := &problem{g: &sub, d: d, m: m, n: s, k: k, k2: r}
		pl, _ := f.eng.plan(p)
		require.NoError(t, f.eng.record(rec, p, pl, gemmDims{cRs: n, cOff: n0, b2Off: n0 * int(b2cs)}))
	}
	require.NoError(t, rec.Submit())
	want := append([]float64(nil), c0...)
	ref.MatmulAcc(want, x, w, m, n, k, false, fm.transB, 0.7, -0.5)
	ref.MatmulAcc(want, ref.RoundTo(d, scaled(xa, 0.37)), lb, m, n, r, false, fm.transB, 1, 1)
	vktest.ExpectClose(t, "C", f.Download(c), ref.RoundTo(d, want), n, ref.Tolerance(d).Product)
}

// denseSlab uploads columns [n0, n0+s) of B (of an [k, n] product) as
// their own operand, stored as the whole B is.
func (f *fixture) denseSlab(d dtype.DType, w []float64, transB bool, n, k, n0, s int) Mat {
	if transB { // B[k, n] = w[n·k + k]: rows n0..n0+s of the [n, k] store
		return Dense(f.Upload(d, w[n0*k:(n0+s)*k], s, k)).T()
	}
	sl := make([]float64, 0, k*s) // B[k, n] = w[k·n + n]: columns of the [k, n] store
	for i := 0; i < k; i++ {
		sl = append(sl, w[i*n+n0:i*n+n0+s]...)
	}
	return Dense(f.Upload(d, sl, k, s))
}

func scaled(xs []float64, s float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = s * x
	}
	return out
}

// NF4 weights at M ≥ nf4SlabMinRows run in column slabs on the
// workgroup-scope kernel: with a slab budget of 128 columns the product is
// several slabs (the last one narrower, on another kernel), with the fused
// term, in both weight forms and both B2 layouts the layers pass: the
// forward's X·Wᵀ with B2 = Bᵀ (beta 0) and dX's G·W with B2 = A stored
// [r, n], accumulating into a C that holds data (beta 1).
func TestNF4Slabs(t *testing.T) {
	for _, d := range []dtype.DType{dtype.F16, dtype.BF16} {
		t.Run(d.String(), func(t *testing.T) {
			f := coopFixture(t, d)
			if !f.eng.CoopMat2(d) {
				t.Skipf("%s has no workgroup-scope cooperative matrices (slabs are for them)", f.Dev.Info().Name)
			}
			defer func() { f.eng.opt.NF4SlabBytes = 0 }()
			const m, out, in, r = nf4SlabMinRows + 8, 300, 136, 6
			q, dw := quanttest.NF4Weight(f.Fixture, d, out, in, 64, true)
			wd := ref.FromFloat32(quant.Dequantize(q))
			for _, trans := range []bool{true, false} { // X·Wᵀ, G·W
				k, n := in, out
				if !trans {
					k, n = out, in
				}
				f.eng.opt.NF4SlabBytes = 128 * k * d.Size()
				x := f.Random(d, m*k, 1)
				xa := f.Random(dtype.F32, m*r, 1)
				lb := f.Random(d, n*r, 1)
				c0 := f.Random(d, m*n, 1)
				g := Gemm{A: Dense(f.Upload(d, x, m, k)), B: NF4(dw), A2: Dense(f.Upload(dtype.F32, xa, m, r)),
					Alpha: 1, Alpha2: 0.37}
				want := ref.Matmul(x, wd, m, n, k, false, trans)
				ref.MatmulAcc(want, ref.RoundTo(d, scaled(xa, 0.37)), lb, m, n, r, false, trans, 1, 1)
				if trans {
					g.B, g.C, g.B2 = g.B.T(), f.Poisoned(d, m, n), Dense(f.Upload(d, lb, n, r)).T()
				} else {
					g.C, g.B2, g.Beta = f.Upload(d, c0, m, n), Dense(f.Upload(d, lb, r, n)), 1
					for i := range want {
						want[i] += c0[i]
					}
				}
				require.True(t, f.eng.nf4Slabs(&g, d, m, n), "the slab path must run")
				require.Equal(t, 128, f.eng.slabCols(d, n, k))
				rec := f.Recorder()
				require.NoError(t, f.eng.Gemm(rec, g))
				require.NoError(t, rec.Submit())
				vktest.ExpectClose(t, fmt.Sprintf("C trans=%v", trans), f.Download(g.C), ref.RoundTo(d, want), n, ref.Tolerance(d).Product)
			}
		})
	}
}

// Slabs are even, multiples of 128 columns, and fit the budget.
func TestSlabCols(t *testing.T) {
	e := &Dispatcher{}
	for _, c := range []struct{ n, k, want int }{
		{4096, 14336, 1024},    // llama3-8b down: 4 slabs of 1024, not 3×1152 + 640
		{14336, 4096, 3584},    // up: 4 slabs
		{300, 64, 300},         // the whole weight fits one slab
		{100000, 1 << 20, 128}, // at least one tile wide
	} {
		require.Equal(t, c.want, e.slabCols(dtype.BF16, c.n, c.k), "n=%d k=%d", c.n, c.k)
	}
}

// One recording's NF4 products share one slab scratch; a larger need or a
// new recording gets a new one, and Submit frees it.
func TestSlabScratchShared(t *testing.T) {
	f := newFixture(t)
	rec := f.Recorder()
	a, err := f.eng.slabScratch(rec, dtype.BF16, 1000)
	require.NoError(t, err)
	b, err := f.eng.slabScratch(rec, dtype.BF16, 800)
	require.NoError(t, err)
	require.Same(t, a, b)
	c, err := f.eng.slabScratch(rec, dtype.BF16, 2000)
	require.NoError(t, err)
	require.NotSame(t, a, c)
	require.NoError(t, rec.Submit())
	require.True(t, c.Released(), "Submit frees the scratch with the recording")
	d, err := f.eng.slabScratch(rec, dtype.BF16, 800)
	require.NoError(t, err)
	require.NotSame(t, c, d)
	require.NoError(t, rec.Submit())
}
