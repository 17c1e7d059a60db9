package conformance

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

func TestMain(m *testing.M) { vktest.Main(m) }

// TestSmallSuiteOnDevice runs the committed PyTorch-generated suite (every
// op, dtype and NF4 variant) on the test device.
func TestSmallSuiteOnDevice(t *testing.T) {
	eng, err := lora.NewEngine(vktest.Device(t), lora.Options{})
	require.NoError(t, err)
	paths, err := Expand(filepath.Join("..", "testdata", "small"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			c, err := Load(p)
			require.NoError(t, err)
			requirePass(t, eng, c)
		})
	}
}

// requirePass runs c and requires a result for every expected tensor, each
// within its tolerance.
func requirePass(t *testing.T, eng *lora.Engine, c *Case) {
	t.Helper()
	res, err := Run(eng, c)
	require.NoError(t, err)
	require.Len(t, res, len(c.Expect))
	for _, r := range res {
		require.Truef(t, r.Pass, "%s: relative error %.3g > tolerance %.3g", r.Key, r.Err, r.Tol)
	}
}

// Prepare builds the kernels of both committed suites (PyTorch's and
// PEFT's) on a device of its own; running the cases afterwards builds no
// kernel and every case still passes.
func TestPrepareThenRunBuildsNothing(t *testing.T) {
	vktest.Device(t) // the shared device's cleanup checks the validation messages
	dev, err := vk.Open(vk.Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, dev.Release()) }()
	eng, err := lora.NewEngine(dev, lora.Options{})
	require.NoError(t, err)
	var cases []*Case
	for _, dir := range []string{filepath.Join("..", "testdata", "small"), peftSmallDir} {
		paths, err := Expand(dir)
		require.NoError(t, err)
		for _, p := range paths {
			c, err := Load(p)
			require.NoError(t, err)
			cases = append(cases, c)
		}
	}
	require.NotEmpty(t, cases)
	require.NoError(t, Prepare(eng, cases))
	prepared := dev.KernelBuilds()
	require.NotZero(t, prepared.Kernels)
	for _, c := range cases {
		requirePass(t, eng, c)
	}
	require.Equal(t, prepared.Kernels, dev.KernelBuilds().Kernels, "kernels built after Prepare")
}
