package optim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

func TestMain(m *testing.M) { vktest.Main(m) }

// problem is a parameter set and the gradients of every step, drawn once
// and shared by the device run and the reference; every value is exact in
// its storage dtype.
type problem struct {
	dts    []dtype.DType
	shapes [][]int
	gdt    []dtype.DType   // gradient dtypes
	init   [][]float32     // [param][elem]
	grads  [][][]float32   // [step][param][elem]
	micro  [][][][]float32 // [step][micro-batch][param][elem] (accumulation runs)
}

// newProblem draws initial values N(0, 1) and gradients N(0, gscale²);
// g32 makes the gradients f32 whatever the parameter dtype.
func newProblem(rng *rand.Rand, dts []dtype.DType, shapes [][]int, steps int, gscale float64, g32 bool) *problem {
	pr := &problem{dts: dts, shapes: shapes}
	for i, d := range dts {
		gd := d
		if g32 {
			gd = dtype.F32
		}
		pr.gdt = append(pr.gdt, gd)
		pr.init = append(pr.init, draw(rng, d, numel(shapes[i]), 1))
	}
	for k := 0; k < steps; k++ {
		var gs [][]float32
		for i := range dts {
			gs = append(gs, draw(rng, pr.gdt[i], numel(shapes[i]), gscale))
		}
		pr.grads = append(pr.grads, gs)
	}
	return pr
}

func draw(rng *rand.Rand, d dtype.DType, n int, scale float64) []float32 {
	return ref.ToFloat32(vktest.Random(rng, d, n, scale))
}

func numel(shape []int) int {
	n := 1
	for _, s := range shape {
		n *= s
	}
	return n
}

// upload makes device tensors holding xs in dtypes dts, released at the
// test's end.
func upload(t *testing.T, dev *vk.Device, dts []dtype.DType, shapes [][]int, xs [][]float32) []*vk.Tensor {
	t.Helper()
	var ts []*vk.Tensor
	for i, d := range dts {
		x, err := dev.TensorFrom(d, xs[i], shapes[i]...)
		require.NoError(t, err)
		t.Cleanup(x.Release)
		ts = append(ts, x)
	}
	return ts
}

func params(ts []*vk.Tensor) []Param {
	var ps []Param
	for i, x := range ts {
		ps = append(ps, Param{Name: fmt.Sprintf("layer%d.w", i), Tensor: x})
	}
	return ps
}

// newOpt makes an AdamW released at the test's end.
func newOpt(t *testing.T, dev *vk.Device, ps []Param, cfg AdamWConfig) *AdamW {
	t.Helper()
	o, err := NewAdamW(dev, ps, cfg)
	require.NoError(t, err)
	t.Cleanup(o.Release)
	return o
}

// stepAll records and submits one step per entry of grads, uploading each
// step's gradients into gts first; it returns the norm of every step when
// the optimizer tracks one.
func stepAll(t *testing.T, rec *vk.Recorder, o *AdamW, gts []*vk.Tensor, grads [][][]float32) []float32 {
	t.Helper()
	var norms []float32
	for _, gs := range grads {
		for i, g := range gs {
			require.NoError(t, gts[i].Upload(g))
		}
		require.NoError(t, o.Step(rec, gts))
		require.NoError(t, rec.Submit())
		if o.tracksNorm() {
			n, err := o.GradNorm()
			require.NoError(t, err)
			norms = append(norms, n)
		}
	}
	return norms
}

// download reads tensors as float32.
func download(t *testing.T, ts []*vk.Tensor) [][]float32 {
	t.Helper()
	var out [][]float32
	for _, x := range ts {
		v, err := x.Float32()
		require.NoError(t, err)
		out = append(out, v)
	}
	return out
}

// exactDriver reports whether the device's division and sqrt are correctly
// rounded and its fma fused, so that the reference's bits are expected:
// lavapipe (llvmpipe on x86-64 with FMA) is.
func exactDriver(dev *vk.Device) bool { return strings.Contains(dev.Info().Name, "llvmpipe") }

// checker compares results with the reference and records the errors.
type checker struct {
	t     *testing.T
	exact bool // require the reference's bits
	worst map[string]float64
}

func newChecker(t *testing.T, dev *vk.Device) *checker {
	return &checker{t: t, exact: exactDriver(dev), worst: map[string]float64{}}
}

// check compares got with want (per parameter) at tolerance tol: RelErr
// over each parameter, and on an exact driver the bits.
func (c *checker) check(what string, got, want [][]float32, tol float64) float64 {
	c.t.Helper()
	require.Len(c.t, got, len(want), what)
	worst := 0.0
	for i := range want {
		e := ref.RelErr(got[i], want[i])
		worst = max(worst, e)
		if e > tol {
			c.t.Errorf("%s[%d]: rel err %.3g > %.3g\n%s", what, i, e, tol, ref.Mismatches(got[i], want[i], 5))
		}
		if n := bitMismatches(got[i], want[i]); c.exact && n > 0 {
			c.t.Errorf("%s[%d]: %d of %d values differ in their bits from the reference (rel err %.3g)\n%s",
				what, i, n, len(want[i]), e, ref.Mismatches(got[i], want[i], 5))
		}
	}
	c.worst[what] = max(c.worst[what], worst)
	c.t.Logf("%s: rel err %.3g (tolerance %.3g)", what, worst, tol)
	return worst
}

func bitMismatches(a, b []float32) int {
	n := 0
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			n++
		}
	}
	return n
}

// tolOf is the tolerance of a result stored in d after a 100-step run:
// ref.Tolerance's Product bound. A step is elementwise (no long sums), and
// the reference follows the kernel's order, so the only differences are
// the drivers' division and sqrt (a few ulp per step) and, for 16-bit
// parameters, the one rounding of the master.
func tolOf(d dtype.DType) float64 { return ref.Tolerance(d).Product }
