package conformance

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/lora"
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
