package vk_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// openCached opens a device of its own with a buffer cache of limit bytes
// and its fault injector counting, released at the test's end.
func openCached(t *testing.T, limit int64) (*vk.Device, *vk.FaultInjector) {
	t.Helper()
	vktest.Device(t) // the cleanup checks the validation messages
	d, err := vk.Open(vk.Options{BufferCacheBytes: limit})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Release()) })
	inj := d.Faults()
	inj.Reset()
	return d, inj
}

// A released buffer's memory serves the next buffer of the same size
// without a new allocation, and holds what it held; another size
// allocates. Device memory accounting counts live buffers only, and
// FreeCachedBuffers empties the cache.
func TestBufferCacheReuses(t *testing.T) {
	d, inj := openCached(t, 1<<20)
	a, err := d.TensorFrom(dtype.F32, []float32{1, 2, 3, 4, 5}, 5)
	require.NoError(t, err)
	_, err = a.Float32() // a GPU's staging buffer is allocated by now
	require.NoError(t, err)
	calls := inj.Calls(vk.FaultAllocateMemory)
	a.Release()
	require.Equal(t, uint64(32), d.CachedBytes(), "5 floats round up to 32 bytes")
	cur, _ := d.MemoryStats()
	require.Zero(t, cur, "cached memory is not live")
	require.Empty(t, d.Live())

	b, err := d.NewTensor(dtype.F32, 8) // the same 32 bytes
	require.NoError(t, err)
	require.Equal(t, calls, inj.Calls(vk.FaultAllocateMemory), "served from the cache")
	require.Zero(t, d.CachedBytes())
	cur, _ = d.MemoryStats()
	require.Equal(t, uint64(32), cur)
	got, err := b.Float32()
	require.NoError(t, err)
	require.Equal(t, []float32{1, 2, 3, 4, 5}, got[:5], "NewTensor is uninitialised: the old contents")
	require.NoError(t, b.Upload([]float32{8, 7, 6, 5, 4, 3, 2, 1}))
	got, err = b.Float32()
	require.NoError(t, err)
	require.Equal(t, []float32{8, 7, 6, 5, 4, 3, 2, 1}, got)

	c, err := d.NewTensor(dtype.F32, 9) // 48 bytes: no match
	require.NoError(t, err)
	require.Equal(t, calls+1, inj.Calls(vk.FaultAllocateMemory))
	b.Release()
	c.Release()
	require.Equal(t, uint64(80), d.CachedBytes())
	require.Equal(t, uint64(80), d.FreeCachedBuffers())
	require.Zero(t, d.CachedBytes())
	require.Zero(t, d.FreeCachedBuffers())
}

// The cache holds at most its limit: a buffer that does not fit evicts the
// oldest entries, one larger than the limit is freed at once, and a
// negative limit turns the cache off.
func TestBufferCacheLimit(t *testing.T) {
	const kib = 1 << 10
	d, inj := openCached(t, 100*kib)
	alloc := func(bytes int) *vk.Tensor {
		x, err := d.NewTensor(dtype.U8, bytes)
		require.NoError(t, err)
		return x
	}
	x, y, z := alloc(40*kib), alloc(40*kib+16), alloc(40*kib+32)
	x.Release()
	y.Release()
	require.Equal(t, uint64(80*kib+16), d.CachedBytes())
	z.Release() // evicts x, the oldest
	require.Equal(t, uint64(80*kib+48), d.CachedBytes())
	calls := inj.Calls(vk.FaultAllocateMemory)
	alloc(40 * kib).Release() // x's size: gone, so it allocates
	require.Equal(t, calls+1, inj.Calls(vk.FaultAllocateMemory))
	alloc(200 * kib).Release() // larger than the limit: never cached
	require.LessOrEqual(t, d.CachedBytes(), uint64(100*kib))

	off, offInj := openCached(t, -1)
	once, err := off.NewTensor(dtype.U8, 64)
	require.NoError(t, err)
	once.Release()
	require.Zero(t, off.CachedBytes())
	offCalls := offInj.Calls(vk.FaultAllocateMemory)
	again, err := off.NewTensor(dtype.U8, 64)
	require.NoError(t, err)
	again.Release()
	require.Equal(t, offCalls+1, offInj.Calls(vk.FaultAllocateMemory))
}

// The default limit: none on a device whose memory is host memory
// (lavapipe, integrated GPUs), a quarter of the device-local heaps on one
// with memory of its own.
func TestBufferCacheDefault(t *testing.T) {
	d, _ := openCached(t, 0)
	x, err := d.NewTensor(dtype.F32, 16)
	require.NoError(t, err)
	x.Release()
	if ty := d.Info().Type; ty == vk.DeviceCPU || ty == vk.DeviceIntegrated {
		require.Zero(t, d.CachedBytes(), "%s: no cache by default", d.Info().Name)
	} else {
		require.Equal(t, uint64(64), d.CachedBytes(), "%s: cached by default", d.Info().Name)
	}
}

// An allocation that fails for want of device memory while the cache holds
// blocks of other sizes frees them and tries once more; a second failure
// is the caller's error, and the device works on.
func TestBufferCacheFreedOnOutOfMemory(t *testing.T) {
	d, inj := openCached(t, 1<<20)
	x, err := d.NewTensor(dtype.F32, 100)
	require.NoError(t, err)
	x.Release()
	require.NotZero(t, d.CachedBytes())
	inj.FailAt(vk.FaultAllocateMemory, 1)
	y, err := d.NewTensor(dtype.F32, 200)
	require.NoError(t, err, "the retry after freeing the cache")
	require.Equal(t, 1, inj.Injected(vk.FaultAllocateMemory))
	require.Zero(t, d.CachedBytes(), "the cache was freed for the retry")
	y.Release()

	// With the cache empty there is no retry: the failure is the caller's.
	d.FreeCachedBuffers()
	inj.FailAt(vk.FaultAllocateMemory, 1)
	_, err = d.NewTensor(dtype.F32, 400)
	require.ErrorIs(t, err, vk.ErrOutOfDeviceMemory)
	require.Equal(t, 2, inj.Injected(vk.FaultAllocateMemory))
	z, err := d.NewTensor(dtype.F32, 400)
	require.NoError(t, err, "the device works on")
	z.Release()
}
