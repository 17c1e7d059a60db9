package vk_test

import (
	"errors"
	"math"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// prepareDevice is a device of the test's own, so that the kernels
// Prepare builds are built by nothing else.
func prepareDevice(t *testing.T) *vk.Device {
	t.Helper()
	vktest.Device(t) // the cleanup checks the validation messages
	d, err := vk.Open(vk.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Release()) })
	return d
}

// fillSteps records, on rec, a Fill of ten and one dispatch of the fill
// kernel per workgroup size (each its own pipeline), each writing its
// index + 1 (as a float) to ten's first 64 elements, with a timestamp on each side.
func fillSteps(d *vk.Device, rec *vk.Recorder, ten *vk.Tensor, wgs []uint32) error {
	if _, err := rec.Timestamp(); err != nil && !errors.Is(err, vk.ErrUnsupported) {
		return err
	}
	if err := rec.Fill(ten.Binding(), 0xdeadbeef); err != nil {
		return err
	}
	for i, wg := range wgs {
		k, err := d.ShaderKernel(shaders.FillKey{}, wg)
		if err != nil {
			return err
		}
		rec.Barrier()
		if err := rec.Dispatch(k, [3]uint32{1, 1, 1}, push(64, math.Float32bits(float32(i+1))), ten.Binding()); err != nil {
			return err
		}
	}
	if _, err := rec.Timestamp(); err != nil && !errors.Is(err, vk.ErrUnsupported) {
		return err
	}
	return nil
}

// Prepare builds every kernel a recording asks for (in parallel), records
// and runs nothing, and leaves the kernels for the real recording, which
// then builds none and computes what it would have computed.
func TestPrepareBuildsKernelsAndRunsNothing(t *testing.T) {
	d := prepareDevice(t)
	wgs := []uint32{24, 40, 56, 72}
	ten, err := d.NewTensor(dtype.F32, 64)
	require.NoError(t, err)
	defer ten.Release()
	require.NoError(t, ten.Upload(make([]float32, 64)))
	before := d.KernelBuilds()
	dispatches := 0
	require.NoError(t, d.Prepare(func(rec *vk.Recorder) error {
		if err := fillSteps(d, rec, ten, wgs); err != nil {
			return err
		}
		dispatches = rec.Dispatches()
		return rec.Submit() // runs nothing on a dry recorder
	}))
	require.Equal(t, len(wgs), dispatches, "the dry recorder counts its dispatches")
	require.Equal(t, before.Kernels+len(wgs), d.KernelBuilds().Kernels, "kernels built by Prepare")
	got, err := ten.Float32()
	require.NoError(t, err)
	require.Equal(t, make([]float32, 64), got, "Prepare ran nothing: the tensor is as uploaded")

	prepared := d.KernelBuilds()
	rec := vktest.Recorder(t, d)
	require.NoError(t, fillSteps(d, rec, ten, wgs))
	require.NoError(t, rec.Submit())
	require.Equal(t, prepared, d.KernelBuilds(), "the real recording builds nothing")
	got, err = ten.Float32()
	require.NoError(t, err)
	for i, v := range got {
		require.Equal(t, float32(len(wgs)), v, "element %d: the last dispatch's value", i)
	}
}

// Prepare reports the recording's error and a failed build, and the device
// works on: the kernel whose build failed is built by the next request.
func TestPrepareErrors(t *testing.T) {
	d := prepareDevice(t)
	require.ErrorIs(t, d.Prepare(nil), vk.ErrInvalidArgument)
	errStep := errors.New("the step's own error")
	require.ErrorIs(t, d.Prepare(func(*vk.Recorder) error { return errStep }), errStep)
	err := d.Prepare(func(*vk.Recorder) error { panic("boom") })
	require.ErrorContains(t, err, "record panicked: boom")
	require.Empty(t, d.Live(), "Prepare's recorder is released")

	ten, err := d.NewTensor(dtype.F32, 64)
	require.NoError(t, err)
	defer ten.Release()
	d.Faults().FailAt(vk.FaultCreatePipeline, 1)
	err = d.Prepare(func(rec *vk.Recorder) error { return fillSteps(d, rec, ten, []uint32{88}) })
	require.ErrorIs(t, err, vk.ErrOutOfHostMemory, "the failed build")
	require.ErrorContains(t, err, "vkCreateComputePipelines")
	d.Faults().Reset()
	rec := vktest.Recorder(t, d)
	require.NoError(t, fillSteps(d, rec, ten, []uint32{88}), "the kernel is built again")
	require.NoError(t, rec.Submit())
	got, err := ten.Float32()
	require.NoError(t, err)
	require.Equal(t, float32(1), got[0])
}

// While Prepare runs, another goroutine's kernel request is deferred too:
// its Dispatch waits for the build, and its recording computes the right
// thing (run it under -race: make race).
func TestPrepareConcurrentRecording(t *testing.T) {
	d := prepareDevice(t)
	inPrepare, done := make(chan struct{}), make(chan struct{})
	var release sync.Once
	finish := func() { release.Do(func() { close(done) }) }
	defer finish() // a failed check must not leave Prepare waiting
	prepared := make(chan error, 1)
	go func() {
		prepared <- d.Prepare(func(rec *vk.Recorder) error {
			close(inPrepare)
			<-done // hold the device in Prepare while the test records
			return nil
		})
	}()
	<-inPrepare
	ten, err := d.NewTensor(dtype.F32, 64)
	require.NoError(t, err)
	defer ten.Release()
	rec := vktest.Recorder(t, d)
	require.NoError(t, fillSteps(d, rec, ten, []uint32{104, 120}), "kernels handed out unbuilt, dispatched once built")
	require.NoError(t, rec.Submit())
	finish()
	require.NoError(t, <-prepared)
	got, err := ten.Float32()
	require.NoError(t, err)
	for i, v := range got {
		require.Equal(t, float32(2), v, "element %d", i)
	}
}
