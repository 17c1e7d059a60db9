package kernels

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/quant/quanttest"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk/vktest"
)

// narrowForm is one rank-r product of the LoRA layers, as the narrow
// kernel sees it: which side of C is narrow, along which index the big
// operand is contiguous, and which operands are f32 intermediates.
type narrowForm struct {
	name           string
	narrowM, axpy  bool // the plan the engine must pick
	transA, transB bool // operands stored transposed
	a32, b32, c32  bool // f32 operands (with a 16-bit layer dtype)
}

var narrowForms = []narrowForm{
	{name: "X·Aᵀ", transB: true, c32: true},                 // [M, r], K = in
	{name: "G·B", c32: true},                                // [M, r], K = out
	{name: "dB=Gᵀ·T", axpy: true, transA: true, b32: true},  // [out, r], K = M
	{name: "dA=Tᵀ·X", narrowM: true, axpy: true, a32: true}, // [r, in], K = M
	{name: "A·Xᵀ", narrowM: true, transB: true},             // [r, M]: X·Aᵀ transposed
}

// TestNarrowMatmul checks every form of the narrow kernel against the
// float64 reference: ranks in each of its column chunks (1 of 8, 16 of 16,
// 24 of 32), wide sides that are not multiples of a workgroup's, a long K
// that splits and a short one that does not, alpha ≠ 1 and beta ≠ 0, and
// asserts that the engine planned the narrow kernel in the expected form.
func TestNarrowMatmul(t *testing.T) {
	f := newFixture(t)
	for _, d := range dtype.Floats {
		for _, fm := range narrowForms {
			for _, r := range []int{1, 16, 24} {
				for _, wk := range [][2]int{{1000, 301}, {37, 2999}} {
					t.Run(fmt.Sprintf("%s/%s/r%d/%dx%d", d, fm.name, r, wk[0], wk[1]), func(t *testing.T) {
						f := f.inOwn(t)
						m, n, k := wk[0], r, wk[1]
						if fm.narrowM {
							m, n = r, wk[0]
						}
						da, db, dc := d, d, d
						if fm.a32 {
							da = dtype.F32
						}
						if fm.b32 {
							db = dtype.F32
						}
						if fm.c32 {
							dc = dtype.F32
						}
						a, b := f.Random(da, m*k, 1), f.Random(db, k*n, 1)
						A, B := Dense(f.Upload(da, a, storedShape(fm.transA, m, k)...)), Dense(f.Upload(db, b, storedShape(fm.transB, k, n)...))
						if fm.transA {
							A = A.T()
						}
						if fm.transB {
							B = B.T()
						}
						alpha, beta := 0.37, 0.0
						c0 := make([]float64, m*n)
						c := f.Poisoned(dc, m, n)
						if (r+wk[0])%2 == 1 { // half the cases accumulate into C
							beta, c0 = -1.5, f.Random(dc, m*n, 1)
							c = f.Upload(dc, c0, m, n)
						}
						g := Gemm{C: c, A: A, B: B, Alpha: float32(alpha), Beta: float32(beta)}
						p, ok := f.eng.narrowPlan(&g, m, n)
						require.True(t, ok, "narrow kernel not planned")
						require.Equal(t, [2]bool{fm.narrowM, fm.axpy}, [2]bool{p.narrowM, p.axpy}, "form (narrowM, axpy)")
						rec := f.Recorder()
						require.NoError(t, f.eng.Gemm(rec, g))
						require.NoError(t, rec.Submit())
						want := append([]float64(nil), c0...)
						ref.MatmulAcc(want, a, b, m, n, k, fm.transA, fm.transB, alpha, beta)
						vktest.ExpectClose(t, "C", f.Download(c), ref.RoundTo(dc, want), n, ref.Tolerance(dc).Product)
					})
				}
			}
		}
	}
}

// TestNarrowPlan: which products take the narrow kernel. Outputs wider than
// narrowMax on both sides, fused terms and NF4 weights do not; the
// environment switch turns it off.
func TestNarrowPlan(t *testing.T) {
	f := newFixture(t)
	const d = dtype.BF16
	x := Dense(f.Upload(d, f.Random(d, 64*40, 1), 64, 40))
	a33 := Dense(f.Upload(d, f.Random(d, 33*40, 1), 33, 40))
	a32 := Dense(f.Upload(d, f.Random(d, 32*40, 1), 32, 40))
	c := f.Poisoned(dtype.F32, 64, 33)
	_, ok := f.eng.narrowPlan(&Gemm{C: c, A: x, B: a33.T(), Alpha: 1}, 64, 33)
	require.False(t, ok, "a 33-wide output is not narrow")
	_, ok = f.eng.narrowPlan(&Gemm{C: c, A: x, B: a32.T(), Alpha: 1}, 64, 32)
	require.True(t, ok, "a 32-wide output is narrow")
	xa := Dense(f.Upload(dtype.F32, f.Random(dtype.F32, 64*2, 1), 64, 2))
	_, ok = f.eng.narrowPlan(&Gemm{C: c, A: x, B: a32.T(), A2: xa, B2: a32, Alpha: 1, Alpha2: 1}, 64, 32)
	require.False(t, ok, "a fused term runs on the tiled kernels")
	_, nf4 := quanttest.NF4Weight(f.Fixture, d, 8, 40, 64, false)
	_, ok = f.eng.narrowPlan(&Gemm{C: c, A: x, B: NF4(nf4).T(), Alpha: 1}, 64, 8)
	require.False(t, ok, "an NF4 weight runs on the tiled kernels")

	off, err := New(f.Dev, Options{DisableNarrow: true})
	require.NoError(t, err)
	_, ok = off.narrowPlan(&Gemm{C: c, A: x, B: a32.T(), Alpha: 1}, 64, 32)
	require.False(t, ok, "Options.DisableNarrow")
}
