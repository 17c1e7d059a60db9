package autograd

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

func TestMain(m *testing.M) { vktest.Main(m) }

// layerTol is lora's bound for layer outputs and gradients; a chain of
// layers rounds more often, so tests may scale it.
var layerTol = map[dtype.DType]float64{dtype.F32: 1e-4, dtype.F16: 1e-2, dtype.BF16: 4e-2}

type fixture struct {
	t   *testing.T
	dev *vk.Device
	eng *lora.Engine
	rng *rand.Rand
}

func newFixture(t *testing.T) *fixture {
	dev := vktest.Device(t)
	eng, err := lora.NewEngine(dev)
	require.NoError(t, err)
	// Seeded per test name: reproducible, yet each test draws fresh values.
	h := fnv.New64a()
	h.Write([]byte(t.Name()))
	return &fixture{t: t, dev: dev, eng: eng, rng: rand.New(rand.NewPCG(h.Sum64(), 7))}
}

// random returns n normal values times scale, rounded to d so the float64
// reference sees exactly what the GPU stores.
func (f *fixture) random(d dtype.DType, n int, scale float64) []float64 {
	return ref.RoundTo(d, ref.Random(f.rng, n, scale))
}

func (f *fixture) upload(d dtype.DType, xs []float64, shape ...int) *vk.Tensor {
	t, err := f.dev.TensorFrom(d, ref.ToFloat32(xs), shape...)
	require.NoError(f.t, err)
	f.t.Cleanup(t.Release)
	return t
}

func (f *fixture) download(t *vk.Tensor) []float64 {
	require.NotNil(f.t, t, "tensor")
	xs, err := t.Float32()
	require.NoError(f.t, err)
	return ref.FromFloat32(xs)
}

func (f *fixture) recorder() *vk.Recorder {
	rec, err := f.dev.NewRecorder()
	require.NoError(f.t, err)
	f.t.Cleanup(rec.Release)
	return rec
}

func (f *fixture) tape() *Tape {
	tp := NewTape(f.eng)
	f.t.Cleanup(tp.Release)
	return tp
}

// proj makes a random projection with non-zero B (a dA bug stays visible)
// and its float64 twin.
func (f *fixture) proj(d dtype.DType, out, in, r int, s float64) (*lora.Projection, *ref.Proj) {
	w := f.random(d, out*in, 1/math.Sqrt(float64(in)))
	rp := &ref.Proj{W: w, Out: out, In: in, R: r, S: s}
	p := &lora.Projection{W: lora.Weight{Dense: f.upload(d, w, out, in)}, Scale: s}
	if r > 0 {
		rp.A = f.random(d, r*in, 1/math.Sqrt(float64(in)))
		rp.B = f.random(d, out*r, 0.5)
		p.A, p.B = f.upload(d, rp.A, r, in), f.upload(d, rp.B, out, r)
	}
	return p, rp
}

func expectClose(t *testing.T, what string, got, want []float64, cols int, bound float64) {
	t.Helper()
	if err := ref.RelErr(got, want); !(err <= bound) {
		t.Fatalf("%s: relative error %.3g > %.3g\n%s", what, err, bound, ref.MismatchesRC(got, want, cols, 5))
	}
}

// checkGrads compares the tape's dA, dB of one projection with the reference.
func (f *fixture) checkGrads(tp *Tape, name string, pv ProjVars, want ref.Grads, rp *ref.Proj, bound float64) {
	f.t.Helper()
	g := pv.Grad(tp)
	expectClose(f.t, name+" dA", f.download(g.A), want.DA, rp.In, bound)
	expectClose(f.t, name+" dB", f.download(g.B), want.DB, rp.R, bound)
}

// add returns a + b rounded to d: what the GPU's accumulation stores.
func add(d dtype.DType, a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] + b[i]
	}
	return ref.RoundTo(d, out)
}

func addGrads(d dtype.DType, gs ...ref.Grads) ref.Grads {
	sum := gs[0]
	for _, g := range gs[1:] {
		sum = ref.Grads{DA: add(d, sum.DA, g.DA), DB: add(d, sum.DB, g.DB)}
	}
	return sum
}
