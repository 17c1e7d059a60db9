package kernels

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// segCase is a product with K segments: each segment's depth and
// fused-term rank (0: none), in one operand form.
type segCase struct {
	m, n   int
	ks, rs []int
	transB bool // B stored [N, K] (X·Wᵀ) rather than [K, N] (G·W)
}

// gemm builds c's product into C from operands that ten makes (dtype, an
// id per operand, shape), with the scales given and fused-term scales
// 0.37 + s.
func (c segCase) gemm(C *vk.Tensor, ten func(dtype.DType, int, ...int) *vk.Tensor, d dtype.DType, alpha, beta float32) Gemm {
	var g Gemm
	for s, k := range c.ks {
		A := ten(d, 2*s, c.m, k)
		Bt := ten(d, 2*s+1, storedShape(c.transB, k, c.n)...)
		B := Dense(Bt)
		if c.transB {
			B = B.T()
		}
		seg := Seg{A: Dense(A), B: B}
		if r := c.rs[s]; r > 0 {
			seg.A2, seg.B2 = Dense(ten(dtype.F32, 100+2*s, c.m, r)), Dense(ten(d, 101+2*s, r, c.n))
			seg.Alpha2 = 0.37 + float32(s)
		}
		if s == 0 {
			g = Gemm{C: C, A: seg.A, B: seg.B, A2: seg.A2, B2: seg.B2, Alpha: alpha, Alpha2: seg.Alpha2, Beta: beta}
		} else {
			g.Segs = append(g.Segs, seg)
		}
	}
	return g
}

// prepareSegments builds the kernels of cases in parallel (vk.Device.
// Prepare), recorded dry on blank tensors: a GPU's compiler takes seconds
// for each workgroup-scope kernel.
func prepareSegments(t *testing.T, f *fixture, d dtype.DType, cases []segCase) {
	require.NoError(t, f.Dev.Prepare(func(rec *vk.Recorder) error {
		blank := func(dt dtype.DType, _ int, shape ...int) *vk.Tensor {
			x, err := f.Dev.NewTensor(dt, shape...)
			require.NoError(t, err)
			rec.Hold(x)
			return x
		}
		for _, c := range cases {
			g := c.gemm(blank(d, 0, c.m, c.n), blank, d, 1, 1)
			if err := f.eng.Gemm(rec, g); err != nil {
				return err
			}
		}
		return nil
	}))
}

// runSegments records C = alpha·Σ A_s·B_s + Σ s_s·A2_s·B2_s + beta·C from
// fresh random operands (C prefilled, the fused terms' scales ≠ 1) and
// compares it with the float64 reference; want names the kernel that must
// run it ("" for any).
func runSegments(t *testing.T, f *fixture, d dtype.DType, c segCase, want string) {
	const alpha, beta = 0.73, -0.5
	m, n := c.m, c.n
	c0 := f.Random(d, m*n, 1)
	C := f.Upload(d, c0, m, n)
	data := map[int][]float64{}
	upload := func(dt dtype.DType, id int, shape ...int) *vk.Tensor {
		size := 1
		for _, x := range shape {
			size *= x
		}
		data[id] = f.Random(dt, size, 1)
		return f.Upload(dt, data[id], shape...)
	}
	g := c.gemm(C, upload, d, alpha, beta)
	want64 := append([]float64(nil), c0...)
	for i := range want64 {
		want64[i] *= beta
	}
	alpha2 := []float32{g.Alpha2}
	for _, s := range g.Segs {
		alpha2 = append(alpha2, s.Alpha2)
	}
	for s, k := range c.ks {
		ref.MatmulAcc(want64, data[2*s], data[2*s+1], m, n, k, false, c.transB, alpha, 1)
		if r := c.rs[s]; r > 0 {
			// The kernels round alpha2·A2 to D before the multiply, as
			// PyTorch's bf16 LoRA term does.
			a2 := data[100+2*s]
			scaled := make([]float64, len(a2))
			for i, v := range a2 {
				scaled[i] = float64(alpha2[s]) * v
			}
			ref.MatmulAcc(want64, ref.RoundTo(d, scaled), data[101+2*s], m, n, r, false, false, 1, 1)
		}
	}
	if want != "" {
		got, err := f.eng.KernelFor(g)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	rec := f.Recorder()
	require.NoError(t, f.eng.Gemm(rec, g))
	require.NoError(t, rec.Submit())
	vktest.ExpectClose(t, "C", f.Download(C), ref.RoundTo(d, want64), n, ref.Tolerance(d).Product)
}

// Products with K segments against the float64 reference, in every dtype:
// odd sizes (partial tiles, K not a multiple of the tile), fused terms of
// ranks that are not powers of two in some segments and none in others,
// beta ≠ 0. On a device without the workgroup-scope kernel they run as one
// product after another; where it runs them, larger cases check its
// one-dispatch walk in both operand forms, with tiles in and out of range.
func TestMatmulSegments(t *testing.T) {
	f := newFixture(t)
	small := []segCase{
		{m: 37, n: 70, ks: []int{45, 19, 8}, rs: []int{7, 3, 0}},
		{m: 64, n: 33, ks: []int{16, 40}, rs: []int{0, 5}, transB: true},
	}
	for _, d := range dtype.Floats {
		for i, c := range small {
			t.Run(fmt.Sprintf("%s/%d", d, i), func(t *testing.T) { runSegments(t, f.inOwn(t), d, c, "") })
		}
	}
	// Enough tiles of the GPU's kernels at these sizes to take the
	// one-dispatch plan, whose depth rule (cm2DeepK) they meet.
	defer func(old int) { targetGroupsCap = old }(targetGroupsCap)
	targetGroupsCap = 16
	large := []segCase{
		{m: 512, n: 768, ks: []int{2048, 1024, 1024}, rs: []int{16, 16, 16}},
		{m: 389, n: 517, ks: []int{1500, 2200, 703}, rs: []int{5, 0, 3}},
		{m: 389, n: 600, ks: []int{3000, 1101}, rs: []int{0, 7}, transB: true},
	}
	for _, d := range []dtype.DType{dtype.F16, dtype.BF16} {
		if !f.eng.CoopMat2(d) {
			continue
		}
		prepareSegments(t, f, d, large)
		for i, c := range large {
			t.Run(fmt.Sprintf("cm2/%s/%d", d, i), func(t *testing.T) { runSegments(t, f.inOwn(t), d, c, "cm2") })
		}
	}
}

// The one-dispatch plan takes QKV's input gradient and refuses what the
// kernel cannot walk: too shallow, too many segments, a segment in another
// operand form, fused terms of different orientations, the option off.
// Runs on any device (the tile list is set by hand; nothing is dispatched).
func TestSegPlan(t *testing.T) {
	f := newFixture(t)
	e := &Dispatcher{dev: f.Dev}
	e.cm2 = map[dtype.DType][]CM2Tile{dtype.BF16: {{BM: 128, BN: 128, BK: 32, WG: 128}}}
	const m, n = 512, 512 // 16 tiles: enough on a CPU device (targetGroups)
	defer func(old int) { targetGroupsCap = old }(targetGroupsCap)
	targetGroupsCap = 16
	d := dtype.BF16
	ten := func(shape ...int) *vk.Tensor { return f.Poisoned(d, shape...) }
	x32 := func(shape ...int) *vk.Tensor { return f.Poisoned(dtype.F32, shape...) }
	c := ten(m, n)
	qkv := func(ks ...int) Gemm {
		g := Gemm{C: c, A: Dense(ten(m, ks[0])), B: Dense(ten(ks[0], n)), A2: Dense(x32(m, 3)), B2: Dense(ten(3, n)), Alpha: 1, Alpha2: 2}
		for _, k := range ks[1:] {
			g.Segs = append(g.Segs, Seg{A: Dense(ten(m, k)), B: Dense(ten(k, n)), A2: Dense(x32(m, 5)), B2: Dense(ten(5, n)), Alpha2: 2})
		}
		return g
	}
	plan := func(g Gemm) bool {
		t.Helper()
		p, err := e.segProblem(g)
		require.NoError(t, err)
		pl, ok := e.segPlan(p)
		if ok {
			require.Equal(t, uint32(1+len(g.Segs)), pl.spec[7], "SEGS")
			require.Equal(t, 1, pl.splits)
		}
		return ok
	}
	require.True(t, plan(qkv(2048, 1024, 1024)), "QKV's input gradient, 4096 deep")
	require.False(t, plan(qkv(2048, 1024, 512)), "3584 deep: the product-by-product plan wins")
	require.False(t, plan(qkv(2048, 1024, 1024, 1024)), "three extra segments")
	g := qkv(2048, 2048)
	g.Segs[0].B = Dense(ten(n, 2048)).T()
	require.False(t, plan(g), "a segment in another operand form")
	g = qkv(2048, 2048)
	g.Segs[0].A2 = Dense(x32(5, m)).T()
	require.False(t, plan(g), "fused terms of different orientations")
	g = qkv(2048, 2048)
	g.A2, g.B2 = Mat{}, Mat{}
	require.True(t, plan(g), "a fused term in a later segment only")
	e.opt.DisableSegments = true
	require.False(t, plan(qkv(2048, 2048)), "DisableSegments")
}

// A bad segment is refused before anything is recorded, naming it, and
// the dispatcher stays usable.
func TestMatmulSegmentsBadInput(t *testing.T) {
	f := newFixture(t)
	d := dtype.F32
	c := f.Poisoned(d, 8, 6)
	a, b := f.Poisoned(d, 8, 4), f.Poisoned(d, 4, 6)
	rec := f.Recorder()
	for _, s := range []Seg{
		{A: Dense(f.Poisoned(d, 7, 4)), B: Dense(b)},
		{A: Dense(a), B: Dense(f.Poisoned(d, 5, 6))},
		{A: Dense(c), B: Dense(f.Poisoned(d, 6, 6))},
		{A: Dense(a), B: Dense(b), A2: Dense(f.Poisoned(d, 8, 2))},
		{A: Dense(f.Poisoned(dtype.F16, 8, 4)), B: Dense(f.Poisoned(dtype.F16, 4, 6))},
	} {
		err := f.eng.Gemm(rec, Gemm{C: c, A: Dense(a), B: Dense(b), Alpha: 1, Segs: []Seg{s}})
		require.Error(t, err)
		require.True(t, errors.Is(err, ErrBadInput), "%v", err)
		require.Contains(t, err.Error(), "kernels: matmul: K segment 1")
		require.Equal(t, 1, strings.Count(err.Error(), "kernels:"), "one prefix: %v", err)
	}
	require.Zero(t, rec.Dispatches(), "nothing recorded")
	x := f.Random(d, 8*4, 1)
	y := f.Random(d, 4*6, 1)
	A, B := f.Upload(d, x, 8, 4), f.Upload(d, y, 4, 6)
	require.NoError(t, f.eng.Gemm(rec, Gemm{C: c, A: Dense(A), B: Dense(B), Alpha: 1, Segs: []Seg{{A: Dense(A), B: Dense(B)}}}))
	require.NoError(t, rec.Submit())
	want := ref.Matmul(x, y, 8, 6, 4, false, false)
	for i := range want {
		want[i] *= 2
	}
	vktest.ExpectClose(t, "C", f.Download(c), want, 6, ref.Tolerance(d).Product)
}
