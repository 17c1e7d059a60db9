package kernels

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

func TestMain(m *testing.M) { vktest.Main(m) }

// fixture binds the shared vktest helpers to one test, its device and dispatcher.
type fixture struct {
	vktest.Fixture
	eng *Dispatcher
}

func newFixture(t *testing.T) *fixture { return newFixtureWith(t, Options{}) }

// newFixtureWith is newFixture with a dispatcher of options opt.
func newFixtureWith(t *testing.T, opt Options) *fixture {
	f := &fixture{Fixture: vktest.NewFixture(t)}
	var err error
	f.eng, err = New(f.Dev, opt)
	require.NoError(t, err)
	return f
}

// in rebinds the fixture to a subtest (vktest.Fixture.In).
func (f *fixture) in(t *testing.T) *fixture {
	g := *f
	g.Fixture = f.Fixture.In(t)
	return &g
}

// inOwn is in with a generator seeded from the subtest's name
// (vktest.Fixture.InOwn).
func (f *fixture) inOwn(t *testing.T) *fixture {
	g := *f
	g.Fixture = f.Fixture.InOwn(t)
	return &g
}

// prepareProducts builds, in parallel (vk.Device.Prepare), the kernels of
// C = alpha·op(A)·op(B) + beta·C for every form and shape on the fixture's
// dispatcher, recorded dry on blank tensors. A GPU's compiler can take
// seconds for each cooperative-matrix kernel; the subtests that follow
// then find theirs built instead of building them one at a time.
func (f *fixture) prepareProducts(t *testing.T, d dtype.DType, fms []form, shapes [][3]int, alpha, beta float32) {
	t.Helper()
	require.NoError(t, f.Dev.Prepare(func(rec *vk.Recorder) error {
		blank := func(shape ...int) (*vk.Tensor, error) {
			x, err := f.Dev.NewTensor(d, shape...)
			if err == nil {
				rec.Hold(x)
			}
			return x, err
		}
		for _, fm := range fms {
			for _, s := range shapes {
				m, n, k := s[0], s[1], s[2]
				a, err := blank(storedShape(fm.transA, m, k)...)
				if err != nil {
					return err
				}
				b, err := blank(storedShape(fm.transB, k, n)...)
				if err != nil {
					return err
				}
				c, err := blank(m, n)
				if err != nil {
					return err
				}
				A, B := Dense(a), Dense(b)
				if fm.transA {
					A = A.T()
				}
				if fm.transB {
					B = B.T()
				}
				if err := f.eng.MatmulTo(rec, c, A, B, alpha, beta); err != nil {
					return err
				}
				if err := rec.Submit(); err != nil { // frees the blanks
					return err
				}
			}
		}
		return nil
	}))
}
