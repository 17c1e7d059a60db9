package vk

// #include "shim.h"
import "C"

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	vulkan "github.com/vulkan-go/vulkan"
)

// memoryTypes remembers the device's memory types so buffers can pick one.
type memoryTypes struct {
	flags      []vulkan.MemoryPropertyFlags
	preferHost bool // CPU and integrated devices: device-local memory is host memory
}

func probeMemoryTypes(phys C.VkPhysicalDevice, t DeviceType) memoryTypes {
	var flags [C.VK_MAX_MEMORY_TYPES]C.uint32_t
	n := C.vkl_memory_types(phys, &flags[0])
	m := memoryTypes{preferHost: t == DeviceCPU || t == DeviceIntegrated}
	for _, f := range flags[:n] {
		m.flags = append(m.flags, vulkan.MemoryPropertyFlags(f))
	}
	return m
}

const (
	memDeviceLocal  = vulkan.MemoryPropertyFlags(vulkan.MemoryPropertyDeviceLocalBit)
	memHostVisible  = vulkan.MemoryPropertyFlags(vulkan.MemoryPropertyHostVisibleBit)
	memHostCoherent = vulkan.MemoryPropertyFlags(vulkan.MemoryPropertyHostCoherentBit)
	memHostCached   = vulkan.MemoryPropertyFlags(vulkan.MemoryPropertyHostCachedBit)
)

// pick returns the first allowed type that has all of want, preferring one
// that also has prefer and none of avoid; -1 when none has want.
func (m memoryTypes) pick(allowed uint32, want, prefer, avoid vulkan.MemoryPropertyFlags) int {
	best, bestScore := -1, -1
	for i, f := range m.flags {
		if allowed&(1<<uint(i)) == 0 || f&want != want {
			continue
		}
		score := 0
		if f&prefer == prefer {
			score += 2
		}
		if f&avoid == 0 {
			score++
		}
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// Buffer is a storage buffer in device memory. On devices whose device-local
// memory is host memory (lavapipe, integrated GPUs) it stays mapped and
// uploads are plain copies; elsewhere they go through a staging buffer.
type Buffer struct {
	dev    *Device
	buf    vulkan.Buffer
	mem    vulkan.DeviceMemory
	size   uint64
	mapped unsafe.Pointer
	kind   string
	// pending counts the commands of unsubmitted recordings that use the
	// buffer: reading it back before they run would return stale data.
	// Atomic: recorders on several goroutines may use one weight.
	pending atomic.Int32
}

// NewBuffer allocates size bytes of device-local storage buffer (rounded up to
// 16 bytes). Sizes beyond the device's storage-buffer range or allocation
// limit fail with ErrTooLarge; the device stays usable.
func (d *Device) NewBuffer(size uint64) (*Buffer, error) {
	if err := d.alive(); err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, fmt.Errorf("vk: NewBuffer: size 0: %w", ErrInvalidArgument)
	}
	size = (size + 15) &^ 15
	c := d.info.Caps
	if size > c.MaxStorageBufferRange || size > c.MaxAllocationSize {
		return nil, fmt.Errorf("vk: NewBuffer: %d bytes exceeds the device limit (storage range %d, allocation %d): %w",
			size, c.MaxStorageBufferRange, c.MaxAllocationSize, ErrTooLarge)
	}
	want, prefer, avoid := memDeviceLocal, vulkan.MemoryPropertyFlags(0), memHostVisible
	if d.mem.preferHost {
		prefer, avoid = memHostVisible|memHostCoherent, 0
	}
	b := d.bufs.take(d, size)
	if b == nil {
		usage := vulkan.BufferUsageFlags(vulkan.BufferUsageStorageBufferBit | vulkan.BufferUsageTransferSrcBit | vulkan.BufferUsageTransferDstBit)
		var err error
		b, err = d.newBuffer(size, usage, want, prefer, avoid)
		if errors.Is(err, ErrOutOfDeviceMemory) && d.bufs.flush(d) > 0 {
			// Cached blocks of other sizes may be what the device lacks.
			b, err = d.newBuffer(size, usage, want, prefer, avoid)
		}
		if err != nil {
			return nil, err
		}
	}
	b.kind = "buffer"
	d.track(b.kind, 1)
	d.account(int64(size))
	d.adopt(b)
	return b, nil
}

func (d *Device) newBuffer(size uint64, usage vulkan.BufferUsageFlags, want, prefer, avoid vulkan.MemoryPropertyFlags) (*Buffer, error) {
	b := &Buffer{dev: d, size: size}
	var vbuf C.VkBuffer
	var reqSize C.VkDeviceSize
	var reqBits C.uint32_t
	r := d.fault(FaultCreateBuffer)
	if r == vulkan.Success {
		r = vulkan.Result(C.vkl_create_buffer(d.cdev(), C.VkDeviceSize(size), C.VkBufferUsageFlags(usage), &vbuf, &reqSize, &reqBits))
	}
	if err := check("vkCreateBuffer", r); err != nil {
		return nil, fmt.Errorf("%w (%d bytes)", err, size)
	}
	b.buf = vulkan.Buffer(unsafe.Pointer(vbuf))
	ti := d.mem.pick(uint32(reqBits), want, prefer, avoid)
	if ti < 0 {
		C.vkl_destroy_buffer(d.cdev(), vbuf, nil, 0)
		return nil, fmt.Errorf("vk: no memory type with flags %#x for a %d-byte buffer: %w", want, size, ErrUnsupported)
	}
	var mem C.VkDeviceMemory
	call := "vkAllocateMemory"
	r = d.fault(FaultAllocateMemory)
	if r == vulkan.Success {
		var bound C.int
		r = vulkan.Result(C.vkl_allocate_bind(d.cdev(), vbuf, reqSize, C.uint32_t(ti), &mem, &bound))
		if bound != 0 {
			call = "vkBindBufferMemory"
		}
	}
	b.mem = vulkan.DeviceMemory(unsafe.Pointer(mem))
	if err := check(call, r); err != nil {
		b.destroy() // frees the memory too when only the bind failed
		return nil, fmt.Errorf("%w (%d bytes)", err, size)
	}
	if d.mem.flags[ti]&(memHostVisible|memHostCoherent) == memHostVisible|memHostCoherent {
		var p unsafe.Pointer
		r = d.fault(FaultMapMemory)
		if r == vulkan.Success {
			r = vulkan.Result(C.vkl_map(d.cdev(), C.VkDeviceMemory(unsafe.Pointer(b.mem)), C.VkDeviceSize(size), &p))
		}
		if err := check("vkMapMemory", r); err != nil {
			b.destroy()
			return nil, fmt.Errorf("%w (%d bytes)", err, size)
		}
		b.mapped = p
	}
	return b, nil
}

// Size is the buffer's size in bytes.
func (b *Buffer) Size() uint64 { return b.size }

// Release frees the buffer, or hands its memory to the device's buffer
// cache (Options.BufferCacheBytes) for a later buffer of the same size. It
// is safe to call more than once.
func (b *Buffer) Release() {
	if b == nil || b.buf == nil {
		return
	}
	d := b.dev
	if b.kind != "buffer" || !d.bufs.keep(d, b) {
		b.destroy()
	}
	if b.kind != "" {
		d.track(b.kind, -1)
		d.account(-int64(b.size))
		d.disown(b)
	}
}

func (b *Buffer) destroy() {
	d := b.dev
	C.vkl_destroy_buffer(d.cdev(), C.VkBuffer(unsafe.Pointer(b.buf)), C.VkDeviceMemory(unsafe.Pointer(b.mem)), C.int(b2i(b.mapped != nil)))
	b.buf, b.mem, b.mapped = nil, nil, nil
}

func (b *Buffer) checkRange(op string, offset, n uint64) error {
	if b == nil || b.buf == nil {
		return fmt.Errorf("vk: %s: buffer: %w", op, ErrReleased)
	}
	if offset > b.size || n > b.size-offset {
		return fmt.Errorf("vk: %s: range [%d,+%d) outside a %d-byte buffer: %w", op, offset, n, b.size, ErrInvalidArgument)
	}
	return nil
}

// Upload copies data into the buffer at offset. It waits for completion.
func (b *Buffer) Upload(offset uint64, data []byte) error {
	if err := b.checkRange("Upload", offset, uint64(len(data))); err != nil {
		return err
	}
	if len(data) == 0 {
		return nil
	}
	if b.mapped != nil {
		copy(unsafe.Slice((*byte)(unsafe.Add(b.mapped, offset)), len(data)), data)
		return nil
	}
	return b.dev.stage(b, offset, data, true)
}

// Download copies len(dst) bytes from the buffer at offset into dst.
func (b *Buffer) Download(offset uint64, dst []byte) error {
	if err := b.checkRange("Download", offset, uint64(len(dst))); err != nil {
		return err
	}
	if n := b.pending.Load(); n > 0 {
		return fmt.Errorf("vk: Download: %d recorded commands that use the buffer have not been submitted (Submit first, or read from another recording's result): %w", n, ErrPending)
	}
	if len(dst) == 0 {
		return nil
	}
	if b.mapped != nil {
		copy(dst, unsafe.Slice((*byte)(unsafe.Add(b.mapped, offset)), len(dst)))
		return nil
	}
	return b.dev.stage(b, offset, dst, false)
}
