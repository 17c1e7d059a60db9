package vk_test

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

func TestMain(m *testing.M) { vktest.Main(m) }

func fillKernel(t *testing.T, d *vk.Device, wg uint32) *vk.Kernel {
	k, err := d.ShaderKernel(shaders.FillKey{}, wg)
	require.NoError(t, err)
	again, err := d.ShaderKernel(shaders.FillKey{}, wg)
	require.NoError(t, err)
	require.Same(t, k, again, "a built kernel comes from the device's cache")
	return k
}

func push(vals ...uint32) []byte {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	return b
}

func TestDevicesListed(t *testing.T) {
	d := vktest.Device(t)
	infos, err := vk.Devices()
	require.NoError(t, err)
	require.NotEmpty(t, infos)
	c := d.Caps()
	require.NotZero(t, c.SubgroupSize)
	require.GreaterOrEqual(t, c.MaxSharedMemory, uint32(16384))
	require.True(t, c.PushDescriptor)
	require.Contains(t, c.Describe(), "subgroup")
	t.Logf("selected %s (validation %v)\n%s", d.Info(), vk.ValidationEnabled(), c.Describe())
}

func TestFillDispatchAndTimestamps(t *testing.T) {
	d := vktest.Device(t)
	k := fillKernel(t, d, 64)
	const n = 1000
	ten, err := d.NewTensor(dtype.F32, n)
	require.NoError(t, err)
	defer ten.Release()
	rec := vktest.Recorder(t, d)
	t0, err := rec.Timestamp()
	require.NoError(t, err)
	require.NoError(t, rec.Fill(ten.Binding(), 0xdeadbeef))
	rec.Barrier()
	require.NoError(t, rec.Dispatch(k, [3]uint32{(n + 63) / 64, 1, 1}, push(n-1, 0x3f800000), ten.Binding()))
	t1, err := rec.Timestamp()
	require.NoError(t, err)
	require.NoError(t, rec.Submit())
	got, err := ten.Float32()
	require.NoError(t, err)
	for i := 0; i < n-1; i++ {
		require.Equal(t, float32(1), got[i], "element %d", i)
	}
	raw, err := ten.RawBytes()
	require.NoError(t, err)
	require.Equal(t, uint32(0xdeadbeef), binary.LittleEndian.Uint32(raw[4*(n-1):]), "the element past count must stay untouched")
	el, err := rec.Elapsed(t0, t1)
	require.NoError(t, err)
	require.Greater(t, el.Nanoseconds(), int64(0))

	// The recorder is reusable after Submit.
	require.NoError(t, rec.Dispatch(k, [3]uint32{(n + 63) / 64, 1, 1}, push(n, 0), ten.Binding()))
	require.NoError(t, rec.Submit())
	got, err = ten.Float32()
	require.NoError(t, err)
	require.Equal(t, make([]float32, n), got)
}

func TestDispatchErrorsAreStickyAndRecoverable(t *testing.T) {
	d := vktest.Device(t)
	k := fillKernel(t, d, 64)
	ten, err := d.NewTensor(dtype.F32, 16)
	require.NoError(t, err)
	defer ten.Release()
	rec := vktest.Recorder(t, d)
	err = rec.Dispatch(k, [3]uint32{1, 1, 1}, push(16), ten.Binding())
	require.ErrorIs(t, err, vk.ErrInvalidArgument)
	require.ErrorContains(t, err, "push-constant")
	require.ErrorIs(t, rec.Submit(), vk.ErrInvalidArgument)
	// After the failed submission the recorder works again.
	require.NoError(t, rec.Dispatch(k, [3]uint32{1, 1, 1}, push(16, 7), ten.Binding()))
	require.NoError(t, rec.Submit())
	raw, err := ten.RawBytes()
	require.NoError(t, err)
	require.Equal(t, uint32(7), binary.LittleEndian.Uint32(raw))
	err = rec.Dispatch(k, [3]uint32{0, 1, 1}, push(16, 7), ten.Binding())
	require.ErrorContains(t, err, "workgroup count")
	require.Error(t, rec.Submit()) // discards the failed recording
}

func TestUploadDownloadLarge(t *testing.T) {
	d := vktest.Device(t)
	const n = 3 << 20 // 12 MiB of f32 goes through staging on discrete GPUs
	xs := make([]float32, n)
	for i := range xs {
		xs[i] = float32(i%1000) * 0.5
	}
	for _, dt := range dtype.Floats {
		ten, err := d.TensorFrom(dt, xs, 3, 1<<20)
		require.NoError(t, err)
		got, err := ten.Float32()
		ten.Release()
		require.NoError(t, err)
		for i := 0; i < n; i += 4099 {
			require.Equal(t, dtype.Round(dt, xs[i]), got[i], "%s element %d", dt, i)
		}
	}
}

func TestBadTensorsAreErrors(t *testing.T) {
	d := vktest.Device(t)
	_, err := d.NewTensor(dtype.F32, 4, 0)
	require.ErrorIs(t, err, vk.ErrInvalidArgument)
	require.ErrorContains(t, err, "[4 0]")
	_, err = d.NewTensor(dtype.BF16, 1<<20, 1<<20, 4)
	require.ErrorIs(t, err, vk.ErrTooLarge)
	_, err = d.TensorFrom(dtype.F32, []float32{1, 2}, 3)
	require.ErrorContains(t, err, "2 values, want 3")
	var nilT *vk.Tensor
	nilT.Release()
	_, err = nilT.Float32()
	require.True(t, errors.Is(err, vk.ErrReleased))
	// The device still works.
	ten, err := d.TensorFrom(dtype.F16, []float32{1, 2, 3}, 3)
	require.NoError(t, err)
	ten.Release()
	ten.Release() // idempotent
}

func TestSelectDevice(t *testing.T) {
	vktest.Device(t)
	_, err := vk.Open(vk.Options{Select: "no-such-device-name"})
	require.ErrorIs(t, err, vk.ErrNoDevice)
	require.ErrorContains(t, err, "no-such-device-name")
	_, err = vk.Open(vk.Options{Select: "99"})
	require.ErrorContains(t, err, "out of range")
}

// TestProfileDispatches: with profiling on, every dispatch of a submission
// is reported with its kernel, grid and a positive time; off, none is.
func TestProfileDispatches(t *testing.T) {
	d := vktest.Device(t)
	k := fillKernel(t, d, 64)
	const n = 1 << 16
	ten, err := d.NewTensor(dtype.F32, n)
	require.NoError(t, err)
	defer ten.Release()
	rec := vktest.Recorder(t, d)
	grid := [3]uint32{n / 64, 1, 1}
	rec.SetProfile(true)
	for i := 0; i < 3; i++ {
		require.NoError(t, rec.Dispatch(k, grid, push(n, uint32(i)), ten.Binding()))
		rec.Barrier()
	}
	require.NoError(t, rec.Submit())
	prof := rec.Profile()
	require.Len(t, prof, 3)
	for _, p := range prof {
		require.Equal(t, "fill_u32", p.Kernel)
		require.Equal(t, grid, p.Groups)
		require.Greater(t, p.Time.Nanoseconds(), int64(0))
	}
	// A later profiled Submit must not change a profile already returned.
	want := slices.Clone(prof)
	require.NoError(t, rec.Dispatch(k, [3]uint32{1, 1, 1}, push(64, 7), ten.Binding()))
	require.NoError(t, rec.Submit())
	require.Len(t, rec.Profile(), 1)
	require.Equal(t, want, prof)
	rec.SetProfile(false)
	require.NoError(t, rec.Dispatch(k, grid, push(n, 0), ten.Binding()))
	require.NoError(t, rec.Submit())
	require.Empty(t, rec.Profile())
}

// TestTensorView: a view reads its parent's bytes under another shape,
// cannot be larger than it, owns nothing, and dies with the parent.
func TestTensorView(t *testing.T) {
	d := vktest.Device(t)
	p, err := d.TensorFrom(dtype.F32, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	require.NoError(t, err)
	v, err := p.View(3, 2)
	require.NoError(t, err)
	got, err := v.Float32()
	require.NoError(t, err)
	require.Equal(t, []float32{1, 2, 3, 4, 5, 6}, got)
	small, err := p.View(4)
	require.NoError(t, err)
	require.Equal(t, []int{4}, small.Shape())
	_, err = p.View(7)
	require.ErrorIs(t, err, vk.ErrInvalidArgument)
	v.Release()
	require.False(t, p.Released(), "releasing a view must not free its parent")
	p.Release()
	require.True(t, v.Released())
	_, err = p.View(2)
	require.ErrorIs(t, err, vk.ErrReleased)
}

// TestProfileLeavesTimestamps: profiling a recording with more dispatches
// than timestamps can bracket still leaves a Timestamp pair to the caller.
func TestProfileLeavesTimestamps(t *testing.T) {
	d := vktest.Device(t)
	k := fillKernel(t, d, 64)
	ten, err := d.NewTensor(dtype.F32, 64)
	require.NoError(t, err)
	defer ten.Release()
	rec := vktest.Recorder(t, d)
	rec.SetProfile(true)
	for i := 0; i < 300; i++ {
		require.NoError(t, rec.Dispatch(k, [3]uint32{1, 1, 1}, push(64, uint32(i)), ten.Binding()))
	}
	t0, err := rec.Timestamp()
	require.NoError(t, err)
	t1, err := rec.Timestamp()
	require.NoError(t, err)
	require.NoError(t, rec.Submit())
	require.Less(t, len(rec.Profile()), 300, "profiling stops when the timestamps run out")
	_, err = rec.Elapsed(t0, t1)
	require.NoError(t, err)
}

// TestRecycleReuse: a recycled temporary's memory goes to the smallest
// later request it fits, as a view; nothing is recycled that the recording
// does not hold; Submit frees it all and empties the pool.
func TestRecycleReuse(t *testing.T) {
	d := vktest.Device(t)
	rec := vktest.Recorder(t, d)
	_, ok := rec.Reuse(dtype.F32, 4)
	require.False(t, ok, "nothing recycled yet")
	small, err := d.NewTensor(dtype.F32, 64)
	require.NoError(t, err)
	big, err := d.NewTensor(dtype.F32, 256)
	require.NoError(t, err)
	stray, err := d.NewTensor(dtype.F32, 8)
	require.NoError(t, err)
	defer stray.Release()
	rec.Hold(small)
	rec.Hold(big)
	require.ErrorIs(t, rec.Recycle(stray), vk.ErrInvalidArgument, "a tensor the recording does not hold")
	require.NoError(t, rec.Recycle(big))
	require.NoError(t, rec.Recycle(small))
	v, ok := rec.Reuse(dtype.BF16, 8, 16) // 256 bytes: small fits, and is the smaller
	require.True(t, ok)
	require.Equal(t, small.Buffer(), v.Buffer())
	require.Equal(t, []int{8, 16}, v.Shape())
	_, ok = rec.Reuse(dtype.F32, 512)
	require.False(t, ok, "2 KiB fits neither")
	w, ok := rec.Reuse(dtype.F32, 100)
	require.True(t, ok)
	require.Equal(t, big.Buffer(), w.Buffer())
	_, ok = rec.Reuse(dtype.F32, 1)
	require.False(t, ok, "both are handed out")
	require.NoError(t, rec.Recycle(v), "a view from Reuse goes back")
	again, ok := rec.Reuse(dtype.F32, 64)
	require.True(t, ok)
	require.Equal(t, small.Buffer(), again.Buffer())

	// Data written through a reused view lands in the recycled memory.
	k := fillKernel(t, d, 64)
	require.NoError(t, rec.Dispatch(k, [3]uint32{1, 1, 1}, push(64, 0x40000000), again.Binding()))
	rec.Barrier()
	require.NoError(t, rec.Copy(stray.Binding(), small.Buffer().Range(0, 32)))
	require.NoError(t, rec.Submit())
	got, err := stray.Float32()
	require.NoError(t, err)
	require.Equal(t, []float32{2, 2, 2, 2, 2, 2, 2, 2}, got)
	require.True(t, small.Released() && big.Released() && again.Released(), "Submit frees held and recycled memory")
	_, ok = rec.Reuse(dtype.F32, 1)
	require.False(t, ok, "Submit empties the pool")
}

// TestSubmitRefusesReleasedBuffers: a buffer released after a command that
// uses it was recorded never reaches the GPU: Submit discards the
// recording with ErrReleased, and the recorder works afterwards.
func TestSubmitRefusesReleasedBuffers(t *testing.T) {
	d := vktest.Device(t)
	k := fillKernel(t, d, 64)
	rec := vktest.Recorder(t, d)
	for _, record := range []func(ten, other *vk.Tensor) error{
		func(ten, _ *vk.Tensor) error { return rec.Dispatch(k, [3]uint32{1, 1, 1}, push(64, 1), ten.Binding()) },
		func(ten, _ *vk.Tensor) error { return rec.Fill(ten.Binding(), 7) },
		func(ten, other *vk.Tensor) error { return rec.Copy(other.Binding(), ten.Binding()) },
	} {
		ten, err := d.NewTensor(dtype.F32, 64)
		require.NoError(t, err)
		other, err := d.NewTensor(dtype.F32, 64)
		require.NoError(t, err)
		require.NoError(t, record(ten, other))
		ten.Release()
		require.ErrorIs(t, rec.Submit(), vk.ErrReleased)
		require.NoError(t, rec.Fill(other.Binding(), 3))
		require.NoError(t, rec.Submit(), "the recorder is usable after a discarded recording")
		got, err := other.Float32()
		require.NoError(t, err)
		require.Equal(t, math.Float32frombits(3), got[0])
		other.Release()
	}
}

// Kernel statistics are refused, with ErrUnsupported, on a device opened
// without them, and the built kernels are listed.
func TestKernelStatisticsOff(t *testing.T) {
	d := vktest.Device(t)
	k := fillKernel(t, d, 64)
	_, err := k.Statistics(d)
	require.ErrorIs(t, err, vk.ErrUnsupported)
	require.Contains(t, d.Kernels(), k)
}

// After Release a recorder refuses Fill and Copy with ErrReleased (they
// once reached the driver with a freed command buffer and aborted).
func TestRecorderFillCopyAfterRelease(t *testing.T) {
	d := vktest.Device(t)
	a, err := d.NewTensor(dtype.F32, 64)
	require.NoError(t, err)
	defer a.Release()
	b, err := d.NewTensor(dtype.F32, 64)
	require.NoError(t, err)
	defer b.Release()
	rec, err := d.NewRecorder()
	require.NoError(t, err)
	rec.Release()
	require.ErrorIs(t, rec.Fill(a.Binding(), 0), vk.ErrReleased)
	require.ErrorIs(t, rec.Copy(a.Binding(), b.Binding()), vk.ErrReleased)
}

// Recycling a held tensor twice in one recording is refused: two later
// temporaries would share its memory.
func TestRecycleTwice(t *testing.T) {
	d := vktest.Device(t)
	rec := vktest.Recorder(t, d)
	tmp, err := d.NewTensor(dtype.F32, 256)
	require.NoError(t, err)
	rec.Hold(tmp)
	require.NoError(t, rec.Recycle(tmp))
	require.ErrorIs(t, rec.Recycle(tmp), vk.ErrInvalidArgument)
	v, ok := rec.Reuse(dtype.F32, 128)
	require.True(t, ok)
	require.NoError(t, rec.Recycle(v), "a reused block may be recycled again")
	require.NoError(t, rec.Submit())
}

// Overlaps: a tensor and itself, a view and its owner overlap; separate
// tensors and released ones do not.
func TestOverlaps(t *testing.T) {
	d := vktest.Device(t)
	a, err := d.NewTensor(dtype.F32, 4, 8)
	require.NoError(t, err)
	defer a.Release()
	b, err := d.NewTensor(dtype.F32, 4, 8)
	require.NoError(t, err)
	v, err := a.View(2, 8)
	require.NoError(t, err)
	require.True(t, vk.Overlaps(a, a))
	require.True(t, vk.Overlaps(a, v))
	require.True(t, vk.Overlaps(v, a))
	require.False(t, vk.Overlaps(a, b))
	require.False(t, vk.Overlaps(a, nil))
	b.Release()
	require.False(t, vk.Overlaps(b, b))
}

// A kernel, a Fill or a Copy of one device recorded on another device's
// recorder is refused (with validation on, these once segfaulted).
func TestForeignDeviceRefused(t *testing.T) {
	a := vktest.Device(t)
	b, err := vk.Open(vk.Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Release()) }()
	k := fillKernel(t, a, 64)
	ta, err := a.NewTensor(dtype.F32, 64)
	require.NoError(t, err)
	defer ta.Release()
	tb, err := b.NewTensor(dtype.F32, 64)
	require.NoError(t, err)
	defer tb.Release()
	for _, try := range []func(rec *vk.Recorder) error{
		func(rec *vk.Recorder) error {
			return rec.Dispatch(k, [3]uint32{1, 1, 1}, push(64, 0), tb.Binding())
		},
		func(rec *vk.Recorder) error { return rec.Fill(ta.Binding(), 0) },
		func(rec *vk.Recorder) error { return rec.Copy(tb.Binding(), ta.Binding()) },
	} {
		rec, err := b.NewRecorder()
		require.NoError(t, err)
		require.ErrorIs(t, try(rec), vk.ErrInvalidArgument)
		require.ErrorContains(t, rec.Err(), "another device")
		rec.Release()
	}
}

// After Device.Release with live objects, those objects are released with
// it: their calls return ErrReleased instead of reaching the driver with
// destroyed handles (Release, Submit and reads once aborted the process).
func TestDeviceReleaseInvalidatesChildren(t *testing.T) {
	vktest.Device(t) // keeps the shared instance alive
	d, err := vk.Open(vk.Options{})
	require.NoError(t, err)
	ten, err := d.TensorFrom(dtype.F32, []float32{1, 2, 3, 4}, 4)
	require.NoError(t, err)
	rec, err := d.NewRecorder()
	require.NoError(t, err)
	tmp, err := d.NewTensor(dtype.F32, 8)
	require.NoError(t, err)
	rec.Hold(tmp)
	err = d.Release()
	require.ErrorContains(t, err, "live objects")
	require.True(t, ten.Released())
	_, err = ten.Float32()
	require.ErrorIs(t, err, vk.ErrReleased)
	ten.Release()
	require.ErrorIs(t, rec.Submit(), vk.ErrReleased)
	rec.Release()
	require.NoError(t, d.Release(), "a second Release is a no-op")
	_, err = d.NewTensor(dtype.F32, 4)
	require.ErrorIs(t, err, vk.ErrReleased)
}

// Reading a tensor that an unsubmitted recording uses returns ErrPending
// instead of stale data; after Submit, or once the recording is discarded,
// it reads normally.
func TestReadPendingRefused(t *testing.T) {
	d := vktest.Device(t)
	ten, err := d.TensorFrom(dtype.F32, []float32{1, 2, 3, 4}, 4)
	require.NoError(t, err)
	defer ten.Release()
	rec := vktest.Recorder(t, d)
	require.NoError(t, rec.Fill(ten.Binding(), 0))
	_, err = ten.Float32()
	require.ErrorIs(t, err, vk.ErrPending)
	require.NoError(t, rec.Submit())
	got, err := ten.Float32()
	require.NoError(t, err)
	require.Equal(t, []float32{0, 0, 0, 0}, got)

	other, err := d.NewRecorder()
	require.NoError(t, err)
	require.NoError(t, other.Fill(ten.Binding(), 7))
	other.Release() // discarded, never run
	got, err = ten.Float32()
	require.NoError(t, err)
	require.Equal(t, []float32{0, 0, 0, 0}, got)
}

// Devices, tensors and recorders are io.Closers; Close is idempotent and
// the device's Close reports what was left live.
func TestClosers(t *testing.T) {
	vktest.Device(t)
	d, err := vk.Open(vk.Options{})
	require.NoError(t, err)
	ten, err := d.NewTensor(dtype.F32, 4)
	require.NoError(t, err)
	rec, err := d.NewRecorder()
	require.NoError(t, err)
	for _, c := range []io.Closer{ten, rec, ten, rec} {
		require.NoError(t, c.Close())
	}
	left, err := d.NewTensor(dtype.F32, 4)
	require.NoError(t, err)
	require.ErrorContains(t, io.Closer(d).Close(), "live objects")
	require.True(t, left.Released())
	require.NoError(t, d.Close())
}

// KernelBuilds counts a kernel once, when the driver compiles it, and
// not when the device's cache returns it.
func TestKernelBuildsCounted(t *testing.T) {
	d := vktest.Device(t)
	before := d.KernelBuilds()
	fillKernel(t, d, 40) // a workgroup size no other test builds
	after := d.KernelBuilds()
	require.Equal(t, before.Kernels+1, after.Kernels, "kernels built")
	require.Greater(t, after.Time, before.Time, "compile time")
	fillKernel(t, d, 40)
	require.Equal(t, after, d.KernelBuilds(), "a cached kernel is not built again")
}
