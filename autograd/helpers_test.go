package autograd

import (
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

type fixture struct {
	t   *testing.T
	dev *vk.Device
	eng *lora.Engine
	rng *rand.Rand
}

func newFixture(t *testing.T) *fixture {
	dev := vktest.Device(t)
	eng, err := lora.NewEngine(dev, lora.Options{})
	require.NoError(t, err)
	return &fixture{t: t, dev: dev, eng: eng, rng: vktest.RNG(t)}
}

func (f *fixture) random(d dtype.DType, n int, scale float64) []float64 {
	return vktest.Random(f.rng, d, n, scale)
}

func (f *fixture) upload(d dtype.DType, xs []float64, shape ...int) *vk.Tensor {
	return vktest.Upload(f.t, f.dev, d, xs, shape...)
}

func (f *fixture) download(t *vk.Tensor) []float64 { return vktest.Download(f.t, t) }

func (f *fixture) recorder() *vk.Recorder { return vktest.Recorder(f.t, f.dev) }

func (f *fixture) tape() *Tape {
	tp := NewTape(f.eng)
	f.t.Cleanup(tp.Release)
	return tp
}

// proj makes a random projection with non-zero B (a dA bug stays visible)
// and its float64 twin.
func (f *fixture) proj(d dtype.DType, out, in, r int, s float64) (*lora.Projection, *ref.Proj) {
	w, a, b, rp := vktest.RandomProjection(f.t, f.dev, f.rng, d, out, in, r, s)
	return &lora.Projection{W: lora.Weight{Dense: w}, A: a, B: b, Scale: s}, rp
}

// checkGrads compares the tape's dA, dB of one projection with the reference.
func (f *fixture) checkGrads(tp *Tape, name string, pv ProjVars, want ref.Grads, rp *ref.Proj, bound float64) {
	f.t.Helper()
	g := pv.Grad(tp)
	vktest.ExpectClose(f.t, name+" dA", f.download(g.A), want.DA, rp.In, bound)
	vktest.ExpectClose(f.t, name+" dB", f.download(g.B), want.DB, rp.R, bound)
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
