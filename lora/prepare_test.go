package lora

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/vk"
)

// vk.Device.Prepare on a real layer: after a dry MLP forward+backward
// (with dropout, DoRA and a lora_B bias, so that every kind of kernel is
// in it), the real step builds no kernel, and its results are those of the
// same step on a device that never ran Prepare, bit for bit.
func TestPrepareBuildsAnMLPStepsKernels(t *testing.T) {
	f := newFixture(t) // the shared device's cleanup checks the validation messages
	fm := newFaultMLP(f, true)
	run := func(prepare bool) [][]byte {
		dev := openFaultDevice(t)
		defer func() { require.NoError(t, dev.Release()) }()
		fl := fm.build(t, dev)
		defer fl.release()
		if prepare {
			require.NoError(t, dev.Prepare(func(rec *vk.Recorder) error {
				_, err := fl.step(rec) // its read-backs are of a dry recording: unset
				return err
			}))
			require.NotZero(t, dev.KernelBuilds().Kernels)
		}
		before := dev.KernelBuilds()
		got, err := fl.freshStep(dev)
		require.NoError(t, err)
		if prepare {
			require.Equal(t, before, dev.KernelBuilds(), "the step after Prepare builds nothing")
		} else {
			require.Greater(t, dev.KernelBuilds().Kernels, before.Kernels, "a cold step builds its kernels")
		}
		return got
	}
	require.Equal(t, run(false), run(true), "the step's results with and without Prepare")
}
