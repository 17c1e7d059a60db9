package optim

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// adamCase is one comparison of the device with the reference.
type adamCase struct {
	name   string
	cfg    AdamWConfig
	dts    []dtype.DType
	shapes [][]int
	g32    bool    // f32 gradients
	gscale float64 // gradient scale
	steps  int
	grid   int // when > 0: updateGrid and normGrid, to run the grid-stride loops
}

func defaults(edit func(*AdamWConfig)) AdamWConfig {
	c := DefaultAdamWConfig()
	edit(&c)
	return c
}

var odd = [][]int{{7, 13}, {33}, {5, 3, 2}}

var adamCases = []adamCase{
	{name: "f32 defaults", cfg: DefaultAdamWConfig(), dts: []dtype.DType{dtype.F32, dtype.F32, dtype.F32}, shapes: odd, gscale: 1, steps: 100},
	{name: "f32 wd clip active warmup-cosine", cfg: defaults(func(c *AdamWConfig) {
		c.LR, c.WeightDecay, c.MaxGradNorm, c.Schedule = 1e-2, 0.1, 1, LinearWarmupCosine(10, 100, 0.1)
	}), dts: []dtype.DType{dtype.F32, dtype.F32, dtype.F32}, shapes: odd, gscale: 1, steps: 100},
	{name: "f32 clip inactive, small beta1", cfg: defaults(func(c *AdamWConfig) {
		c.LR, c.Beta1, c.Beta2, c.Eps, c.WeightDecay, c.MaxGradNorm = 3e-3, 0.3, 0.6, 1e-6, 0.05, 1e3
	}), dts: []dtype.DType{dtype.F32, dtype.F32}, shapes: [][]int{{129}, {3, 41}}, gscale: 0.1, steps: 100},
	{name: "bf16 wd clip active", cfg: defaults(func(c *AdamWConfig) {
		c.LR, c.WeightDecay, c.MaxGradNorm = 1e-2, 0.01, 0.5
	}), dts: []dtype.DType{dtype.BF16, dtype.BF16}, shapes: [][]int{{9, 17}, {65}}, gscale: 1, steps: 100},
	{name: "f16 f32 grads track norm cosine", cfg: defaults(func(c *AdamWConfig) {
		c.LR, c.TrackGradNorm, c.Schedule = 5e-3, true, LinearWarmupCosine(5, 100, 0)
	}), dts: []dtype.DType{dtype.F16, dtype.F16}, shapes: [][]int{{11, 3}, {1}}, g32: true, gscale: 1e-2, steps: 100},
	{name: "mixed dtypes grid-stride", cfg: defaults(func(c *AdamWConfig) {
		c.LR, c.MaxGradNorm = 1e-2, 2
	}), dts: []dtype.DType{dtype.F32, dtype.BF16, dtype.F16}, shapes: [][]int{{1500}, {700, 3}, {513}}, gscale: 1, steps: 20, grid: 2},
}

// TestAdamWMatchesReference runs each case on the device and on the CPU
// reference and compares parameters, master copies, moments and norms.
func TestAdamWMatchesReference(t *testing.T) {
	base := vktest.NewFixture(t)
	for _, c := range adamCases {
		t.Run(c.name, func(t *testing.T) {
			f := base.InOwn(t)
			if c.grid > 0 {
				shrinkGrids(t, c.grid)
			}
			pr := newProblem(f.RNG, c.dts, c.shapes, c.steps, c.gscale, c.g32)
			o, norms := runDevice(t, f, c.cfg, pr)
			r := newRef(c.cfg, c.dts, pr.init)
			var refNorms []float32
			for _, gs := range pr.grads {
				r.Step(gs)
				refNorms = append(refNorms, r.norm)
			}
			ck := newChecker(t, f.Dev)
			compareState(ck, o, r)
			if o.tracksNorm() {
				ck.check("grad norms", [][]float32{norms}, [][]float32{refNorms}, tolOf(dtype.F32))
				// And against float64 sums, the order-free truth.
				var exact []float32
				for _, gs := range pr.grads {
					exact = append(exact, norm64(gs))
				}
				if e := ref.RelErr(norms, exact); e > 1e-6 {
					t.Errorf("grad norms: rel err %.3g against float64 sums", e)
				}
			}
			require.Equal(t, c.steps, o.Steps())
		})
	}
}

// compareState compares the device's parameters and state with r's.
func compareState(ck *checker, o *AdamW, r *refAdamW) {
	t := ck.t
	st, err := o.State()
	require.NoError(t, err)
	require.Equal(t, r.step, st.Step)
	got := download(t, tensorsOf(o.Params()))
	want := r.params()
	for i, p := range o.Params() {
		d := p.Tensor.DType()
		ck.check("params "+d.String(), got[i:i+1], want[i:i+1], tolOf(d))
	}
	var m, v, master, wantMaster [][]float32
	for i, s := range st.Params {
		m, v = append(m, s.ExpAvg), append(v, s.ExpAvgSq)
		if s.Master != nil {
			master, wantMaster = append(master, s.Master), append(wantMaster, r.master[i])
		} else {
			require.Equal(t, dtype.F32, s.DType)
		}
	}
	ck.check("exp_avg", m, r.m, tolOf(dtype.F32))
	ck.check("exp_avg_sq", v, r.v, tolOf(dtype.F32))
	if master != nil {
		ck.check("master", master, wantMaster, tolOf(dtype.F32))
	}
}

func tensorsOf(ps []Param) []*vk.Tensor {
	var ts []*vk.Tensor
	for _, p := range ps {
		ts = append(ts, p.Tensor)
	}
	return ts
}

// runDevice runs pr's steps on the device with config cfg.
func runDevice(t *testing.T, f vktest.Fixture, cfg AdamWConfig, pr *problem) (*AdamW, []float32) {
	t.Helper()
	ps := upload(t, f.Dev, pr.dts, pr.shapes, pr.init)
	gts := upload(t, f.Dev, pr.gdt, pr.shapes, pr.grads[0])
	o := newOpt(t, f.Dev, params(ps), cfg)
	return o, stepAll(t, f.Recorder(), o, gts, pr.grads)
}

func shrinkGrids(t *testing.T, n int) {
	su, sn := updateGrid, normGrid
	updateGrid, normGrid = n, n
	t.Cleanup(func() { updateGrid, normGrid = su, sn })
}

func norm64(gs [][]float32) float32 {
	var s float64
	for _, g := range gs {
		for _, x := range g {
			s += float64(x) * float64(x)
		}
	}
	return float32(math.Sqrt(s))
}

// TestReferenceCanFail: the comparison detects a wrong hyperparameter, a
// missing clip, a wrong schedule and a missed weight decay — so a kernel
// with one of those bugs fails TestAdamWMatchesReference.
func TestReferenceCanFail(t *testing.T) {
	f := vktest.NewFixture(t)
	c := adamCases[1] // f32, wd, clip, warmup-cosine
	pr := newProblem(f.RNG, c.dts, c.shapes, 30, c.gscale, c.g32)
	o, _ := runDevice(t, f, c.cfg, pr)
	got := download(t, tensorsOf(o.Params()))
	tol := tolOf(dtype.F32)
	for _, wrong := range []struct {
		name string
		edit func(*AdamWConfig)
	}{
		{"beta1 0.91", func(c *AdamWConfig) { c.Beta1 = 0.91 }},
		{"beta2 0.99", func(c *AdamWConfig) { c.Beta2 = 0.99 }},
		{"no clipping", func(c *AdamWConfig) { c.MaxGradNorm = 0 }},
		{"no weight decay", func(c *AdamWConfig) { c.WeightDecay = 0 }},
		{"constant rate", func(c *AdamWConfig) { c.Schedule = nil }},
		{"eps 1e-3", func(c *AdamWConfig) { c.Eps = 1e-3 }},
	} {
		cfg := c.cfg
		wrong.edit(&cfg)
		r := newRef(cfg, c.dts, pr.init)
		for _, gs := range pr.grads {
			r.Step(gs)
		}
		worst := 0.0
		for i, want := range r.params() {
			worst = max(worst, ref.RelErr(got[i], want))
		}
		if worst <= tol {
			t.Errorf("%s: the reference still matches (rel err %.3g ≤ %.3g): the test could not catch it", wrong.name, worst, tol)
		}
		t.Logf("%s: rel err %.3g", wrong.name, worst)
	}
}

// TestAccumulation: three micro-batches summed in f32 (GradAccumulator) per
// step, for bf16 and f32 parameters, against the reference fed the same
// sums.
func TestAccumulation(t *testing.T) {
	f := vktest.NewFixture(t)
	dts := []dtype.DType{dtype.BF16, dtype.F32}
	shapes := [][]int{{13, 5}, {77}}
	const steps, micro = 10, 3
	scale := float32(1.0 / micro)
	cfg := defaults(func(c *AdamWConfig) { c.LR, c.MaxGradNorm = 1e-2, 1 })
	pr := newProblem(f.RNG, dts, shapes, steps*micro, 1, false)
	ps := upload(t, f.Dev, dts, shapes, pr.init)
	o := newOpt(t, f.Dev, params(ps), cfg)
	acc, err := NewGradAccumulator(f.Dev, o.Params())
	require.NoError(t, err)
	t.Cleanup(acc.Release)
	gts := upload(t, f.Dev, dts, shapes, pr.grads[0])
	rec := f.Recorder()
	r := newRef(cfg, dts, pr.init)
	for k := 0; k < steps; k++ {
		sums := make([][]float32, len(dts))
		for i := range dts {
			sums[i] = make([]float32, numel(shapes[i]))
		}
		for j := 0; j < micro; j++ {
			gs := pr.grads[k*micro+j]
			for i, g := range gs {
				require.NoError(t, gts[i].Upload(g))
				for e, x := range g {
					sums[i][e] += float32(scale * x)
				}
			}
			require.NoError(t, acc.Add(rec, gts, scale))
			require.NoError(t, rec.Submit()) // the next micro-batch overwrites gts
		}
		require.NoError(t, o.Step(rec, acc.Grads()))
		require.NoError(t, acc.ZeroGrad(rec))
		require.NoError(t, rec.Submit())
		r.Step(sums)
	}
	// After ZeroGrad the accumulators are zero.
	for _, g := range download(t, acc.Grads()) {
		for _, x := range g {
			require.Zero(t, x)
		}
	}
	compareState(newChecker(t, f.Dev), o, r)
	// The accumulator sums: check one batch directly.
	for i, g := range pr.grads[0] {
		require.NoError(t, gts[i].Upload(g))
	}
	require.NoError(t, acc.Add(rec, gts, 1))
	require.NoError(t, acc.Add(rec, gts, 0.5))
	require.NoError(t, rec.Submit())
	got := download(t, acc.Grads())
	for i, g := range pr.grads[0] {
		for e, x := range g {
			want := x + float32(0.5*x)
			require.Equal(t, want, got[i][e], "accumulator %d[%d]", i, e)
		}
	}
}

func TestStepScalars(t *testing.T) {
	// Python's b ** float(n), printed by repr.
	for _, c := range []struct {
		b    float64
		n    int
		want float64
	}{
		{0.9, 1, 0.9}, {0.9, 2, 0.81}, {0.9, 3, 0.7290000000000001}, {0.9, 100, 2.6561398887587544e-05},
		{0.999, 1, 0.999}, {0.999, 7, 0.993020965034979}, {0.999, 100, 0.9047921471137089},
		{0.999, 1000, 0.36769542477096373}, {0.3, 5, 0.0024299999999999994}, {0.95, 37, 0.14989025404881545},
	} {
		if got := powRN(c.b, c.n); got != c.want {
			t.Errorf("powRN(%v, %d) = %v, Python gives %v", c.b, c.n, got, c.want)
		}
	}
	c := DefaultAdamWConfig()
	p := stepScalars(c, 1e-3, 1)
	require.Equal(t, float32(1-1e-3*1e-2), p.Decay)
	require.Equal(t, float32(0.1), p.W1)
	require.Equal(t, float32(0.999), p.Beta2)
	require.Equal(t, float32(1-0.999), p.C2)
	require.Equal(t, float32(-1e-3/(1-0.9)), p.NegStep)
	require.Equal(t, float32(math.Sqrt(1-0.999)), p.BC2Sqrt)
	require.Equal(t, float32(1e-8), p.Eps)
}

func TestSchedules(t *testing.T) {
	require.Equal(t, 1.0, Constant()(0))
	require.Equal(t, 1.0, Constant()(12345))
	s := LinearWarmupCosine(10, 110, 0.1)
	for _, c := range []struct {
		k    int
		want float64
	}{
		{0, 0}, {1, 0.1}, {5, 0.5}, {10, 1}, {60, 0.1 + 0.9*0.5*(1+math.Cos(math.Pi*0.5))}, {110, 0.1},
		{35, 0.1 + 0.9*0.5*(1+math.Cos(math.Pi*0.25))},
	} {
		require.InDelta(t, c.want, s(c.k), 1e-15, "k=%d", c.k)
	}
	// transformers' get_cosine_schedule_with_warmup (min ratio 0): never
	// below 0, even past the end; warmup 0 starts at the full rate.
	z := LinearWarmupCosine(0, 100, 0)
	require.Equal(t, 1.0, z(0))
	require.InDelta(t, 0, z(100), 1e-15)
	require.InDelta(t, 0.5, z(50), 1e-15)
	require.GreaterOrEqual(t, z(100), 0.0)
	require.True(t, math.IsNaN(LinearWarmupCosine(1, 10, math.NaN())(3)))
	// The rate of step t is LR·schedule(t−1): the first warmup step runs at 0.
	f := vktest.NewFixture(t)
	ps := upload(t, f.Dev, []dtype.DType{dtype.F32}, [][]int{{4}}, [][]float32{{1, 2, 3, 4}})
	o := newOpt(t, f.Dev, params(ps), defaults(func(c *AdamWConfig) { c.Schedule = LinearWarmupCosine(4, 8, 0) }))
	gts := upload(t, f.Dev, []dtype.DType{dtype.F32}, [][]int{{4}}, [][]float32{{1, 1, 1, 1}})
	rec := f.Recorder()
	for k, want := range []float64{0, 1e-3 / 4, 1e-3 / 2} {
		require.NoError(t, o.Step(rec, gts))
		require.NoError(t, rec.Submit())
		require.InDelta(t, want, o.LastLR(), 1e-18, "step %d", k+1)
	}
}
