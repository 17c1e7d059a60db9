package vktest

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
)

// Fixture binds the helpers of this package to one test, its device and a
// random generator, so that a test's tables read as data. Packages embed it
// in a fixture of their own that adds their engine.
type Fixture struct {
	T   *testing.T
	Dev *vk.Device
	RNG *rand.Rand
}

// NewFixture opens the test device. The generator is seeded from the
// test name's length, not RNG: some cases of the layer tables sit near
// their bounds with other draws (f32, M = 1, r = 1: one fp32 dot product
// with cancellation), so their inputs stay fixed.
func NewFixture(t *testing.T) Fixture {
	return Fixture{T: t, Dev: Device(t), RNG: rand.New(rand.NewPCG(uint64(len(t.Name())), 42))}
}

// In rebinds the fixture to a subtest, so that its failures and cleanups
// belong to the subtest (a parent's FailNow from a subtest aborts the run).
func (f Fixture) In(t *testing.T) Fixture {
	f.T = t
	return f
}

// InOwn is In with a generator seeded from the subtest's name: cases added
// to a table draw from it, so the cases before them keep their inputs.
func (f Fixture) InOwn(t *testing.T) Fixture {
	f = f.In(t)
	f.RNG = RNG(t)
	return f
}

// Random draws n values of dtype d (see Random).
func (f Fixture) Random(d dtype.DType, n int, scale float64) []float64 {
	return Random(f.RNG, d, n, scale)
}

// Upload makes a tensor holding xs (see Upload).
func (f Fixture) Upload(d dtype.DType, xs []float64, shape ...int) *vk.Tensor {
	return Upload(f.T, f.Dev, d, xs, shape...)
}

// Poisoned makes a tensor whose every element is NaN (see Poisoned).
func (f Fixture) Poisoned(d dtype.DType, shape ...int) *vk.Tensor {
	return Poisoned(f.T, f.Dev, d, shape...)
}

// Download reads a tensor as float64 (see Download).
func (f Fixture) Download(t *vk.Tensor) []float64 { return Download(f.T, t) }

// Recorder makes a recorder released at the test's end (see Recorder).
func (f Fixture) Recorder() *vk.Recorder { return Recorder(f.T, f.Dev) }

// Keep registers result tensors for release at the end of the test.
func (f Fixture) Keep(ts ...*vk.Tensor) {
	for _, t := range ts {
		f.T.Cleanup(t.Release)
	}
}

// RequireSameTensors compares the raw bytes of result tensors pairwise and,
// where they differ, reports the values.
func (f Fixture) RequireSameTensors(what string, got, want []*vk.Tensor) {
	f.T.Helper()
	require.Len(f.T, got, len(want))
	for i := range want {
		if (got[i] == nil) != (want[i] == nil) {
			f.T.Fatalf("%s: result %d: nil mismatch", what, i)
		}
		if want[i] == nil {
			continue
		}
		g, err := got[i].RawBytes()
		require.NoError(f.T, err)
		w, err := want[i].RawBytes()
		require.NoError(f.T, err)
		if string(g) != string(w) {
			ExpectClose(f.T, fmt.Sprintf("%s result %d (not bit-identical)", what, i), f.Download(got[i]), f.Download(want[i]), got[i].Dim(got[i].Rank()-1), 0)
		}
	}
}
