package vk_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// The fault-injection hook: each kind fails the k-th call from FailAt on,
// once, with the error a driver gives (naming the call, matching its
// sentinel), and the device works on afterwards with nothing left live.
// Counting starts when the injector is installed; Reset zeroes it.
func TestFaultInjector(t *testing.T) {
	vktest.Device(t) // the cleanup checks the validation messages
	// No buffer cache: every NewTensor allocates.
	d, err := vk.Open(vk.Options{BufferCacheBytes: -1})
	require.NoError(t, err)
	defer func() { require.NoError(t, d.Release()) }()
	inj := d.Faults()
	require.Same(t, inj, d.Faults())
	require.Equal(t, "vkAllocateMemory", vk.FaultAllocateMemory.String())
	require.Equal(t, "FaultKind(99)", vk.FaultKind(99).String())

	alloc := func() error {
		ten, err := d.NewTensor(dtype.F32, 8)
		ten.Release()
		return err
	}
	kinds := map[vk.FaultKind]error{vk.FaultCreateBuffer: vk.ErrOutOfDeviceMemory, vk.FaultAllocateMemory: vk.ErrOutOfDeviceMemory}
	if d.Info().Type == vk.DeviceCPU || d.Info().Type == vk.DeviceIntegrated {
		kinds[vk.FaultMapMemory] = vk.ErrMemoryMapFailed // only host-visible buffers are mapped
	}
	for kind, sentinel := range kinds {
		inj.Reset()
		inj.FailAt(kind, 3)
		for i := 1; i <= 4; i++ {
			err := alloc()
			if i != 3 {
				require.NoError(t, err, "%s: call %d", kind, i)
				continue
			}
			require.ErrorIs(t, err, sentinel, kind.String())
			require.ErrorContains(t, err, kind.String())
			var re *vk.ResultError
			require.True(t, errors.As(err, &re))
			require.Equal(t, kind.String(), re.Call)
		}
		require.Equal(t, 4, inj.Calls(kind))
		require.Equal(t, 1, inj.Injected(kind))
		require.Empty(t, d.Live())
	}

	// FailAt(kind, 0) cancels; Reset zeroes the counts.
	inj.FailAt(vk.FaultCreateBuffer, 1)
	inj.FailAt(vk.FaultCreateBuffer, 0)
	require.NoError(t, alloc())
	inj.Reset()
	require.Zero(t, inj.Calls(vk.FaultCreateBuffer))
	require.Zero(t, inj.Injected(vk.FaultAllocateMemory))

	// Pipelines: the module and the pipeline, each naming its call; a
	// kernel that failed is built by the next call.
	for _, kind := range []vk.FaultKind{vk.FaultCreateShaderModule, vk.FaultCreatePipeline} {
		wg := uint32(32)
		if kind == vk.FaultCreatePipeline {
			wg = 128
		}
		inj.FailAt(kind, 1)
		_, err := d.ShaderKernel(shaders.FillKey{}, wg)
		require.ErrorIs(t, err, vk.ErrOutOfHostMemory, kind.String())
		require.ErrorContains(t, err, kind.String()+": out of host memory")
		k, err := d.ShaderKernel(shaders.FillKey{}, wg)
		require.NoError(t, err, "%s: the next build", kind)
		require.NotNil(t, k)
	}

	// Submit: the recording is discarded, the recorder records again.
	ten, err := d.NewTensor(dtype.F32, 64)
	require.NoError(t, err)
	defer ten.Release()
	rec, err := d.NewRecorder()
	require.NoError(t, err)
	defer rec.Release()
	inj.FailAt(vk.FaultQueueSubmit, 1)
	require.NoError(t, rec.Fill(ten.Binding(), 7))
	err = rec.Submit()
	require.ErrorIs(t, err, vk.ErrOutOfDeviceMemory)
	require.ErrorContains(t, err, "vkQueueSubmit")
	_, err = ten.Float32()
	require.NoError(t, err, "the discarded recording leaves nothing pending")
	require.NoError(t, rec.Fill(ten.Binding(), 0x3f800000))
	require.NoError(t, rec.Submit())
	got, err := ten.Float32()
	require.NoError(t, err)
	require.Equal(t, float32(1), got[63])
}
