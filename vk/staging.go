package vk

// #include "shim.h"
import "C"

import (
	"unsafe"

	vulkan "github.com/vulkan-go/vulkan"
)

// stagingChunk bounds the host-visible staging buffer: larger transfers are
// split, so a multi-GiB upload never needs a multi-GiB staging allocation.
const stagingChunk = 64 << 20

// stagingArea is one reusable host-visible buffer plus a command buffer and
// fence for copies between it and device-local buffers.
type stagingArea struct {
	buf *Buffer
	submission
}

func (d *Device) stagingFor(n uint64) (*stagingArea, error) {
	if n > stagingChunk {
		n = stagingChunk
	}
	s := d.staging
	if s != nil && s.buf != nil && s.buf.size >= n {
		return s, nil
	}
	if s == nil {
		sub, err := d.newSubmission()
		if err != nil {
			return nil, err
		}
		s = &stagingArea{submission: sub}
		d.staging = s
	}
	if s.buf != nil {
		s.buf.destroy()
		s.buf = nil // stays nil if the larger one fails: the next transfer tries again
	}
	size := uint64(1 << 20)
	for size < n {
		size *= 2
	}
	usage := vulkan.BufferUsageFlags(vulkan.BufferUsageTransferSrcBit | vulkan.BufferUsageTransferDstBit)
	b, err := d.newBuffer(size, usage, memHostVisible|memHostCoherent, memHostCached, 0)
	if err != nil {
		return nil, err
	}
	s.buf = b
	return s, nil
}

func (s *stagingArea) release(d *Device) {
	if s.buf != nil {
		s.buf.destroy()
	}
	s.submission.release(d)
}

// stage copies data through the staging buffer, chunk by chunk. The one
// staging area serves one transfer at a time.
func (d *Device) stage(b *Buffer, offset uint64, data []byte, upload bool) error {
	d.smu.Lock()
	defer d.smu.Unlock()
	s, err := d.stagingFor(uint64(len(data)))
	if err != nil {
		return err
	}
	for done := uint64(0); done < uint64(len(data)); {
		n := uint64(len(data)) - done
		if n > s.buf.size {
			n = s.buf.size
		}
		host := unsafe.Slice((*byte)(s.buf.mapped), n)
		if upload {
			copy(host, data[done:done+n])
		}
		region := vulkan.BufferCopy{SrcOffset: 0, DstOffset: vulkan.DeviceSize(offset + done), Size: vulkan.DeviceSize(n)}
		src, dst := s.buf.buf, b.buf
		if !upload {
			region = vulkan.BufferCopy{SrcOffset: vulkan.DeviceSize(offset + done), DstOffset: 0, Size: vulkan.DeviceSize(n)}
			src, dst = b.buf, s.buf.buf
		}
		if err := d.oneShot(s, func(cb vulkan.CommandBuffer) {
			C.vkl_cmd_copy(C.VkCommandBuffer(unsafe.Pointer(cb)), C.VkBuffer(unsafe.Pointer(src)), C.VkBuffer(unsafe.Pointer(dst)),
				C.VkDeviceSize(region.SrcOffset), C.VkDeviceSize(region.DstOffset), C.VkDeviceSize(region.Size))
		}); err != nil {
			return err
		}
		if !upload {
			copy(data[done:done+n], host)
		}
		done += n
	}
	return nil
}

// oneShot records fn into the staging command buffer, submits it and waits.
func (d *Device) oneShot(s *stagingArea, fn func(cb vulkan.CommandBuffer)) error {
	if err := check("vkBeginCommandBuffer", vulkan.Result(C.vkl_begin(C.VkCommandBuffer(unsafe.Pointer(s.cb))))); err != nil {
		return err
	}
	fn(s.cb)
	if err := check("vkEndCommandBuffer", vulkan.EndCommandBuffer(s.cb)); err != nil {
		return err
	}
	return d.submitAndWait(s.submission)
}

// submission is a command buffer and the fence that signals its work is
// done: what both a Recorder and the staging copies submit and wait on.
type submission struct {
	pool  vulkan.CommandPool
	cb    vulkan.CommandBuffer
	fence vulkan.Fence
}

// newSubmission makes a command buffer in a command pool of its own (a
// pool may be used by one thread at a time, so recorders on different
// goroutines must not share one) and its fence.
func (d *Device) newSubmission() (submission, error) {
	var pool C.VkCommandPool
	var cb C.VkCommandBuffer
	var fence C.VkFence
	if err := check("vkCreateCommandPool", vulkan.Result(C.vkl_new_submission(d.cdev(), C.uint32_t(d.info.Caps.QueueFamily), &pool, &cb, &fence))); err != nil {
		return submission{}, err
	}
	return submission{pool: vulkan.CommandPool(unsafe.Pointer(pool)), cb: vulkan.CommandBuffer(unsafe.Pointer(cb)),
		fence: vulkan.Fence(unsafe.Pointer(fence))}, nil
}

// release frees the fence, command buffer and pool; safe on a zero
// submission.
func (s *submission) release(d *Device) {
	if s.fence != nil {
		vulkan.DestroyFence(d.dev, s.fence, nil)
	}
	if s.pool != nil {
		vulkan.DestroyCommandPool(d.dev, s.pool, nil) // frees its command buffer too
	}
	s.fence, s.cb, s.pool = nil, nil, nil
}

func (d *Device) submitAndWait(s submission) error {
	// The queue is externally synchronized: one submit at a time. Waiting
	// on the fence needs no lock, so recordings run concurrently.
	d.qmu.Lock()
	r := d.fault(FaultQueueSubmit)
	if r == vulkan.Success {
		r = vulkan.Result(C.vkl_submit(C.VkQueue(unsafe.Pointer(d.queue)), C.VkCommandBuffer(unsafe.Pointer(s.cb)), C.VkFence(unsafe.Pointer(s.fence))))
	}
	err := check("vkQueueSubmit", r)
	d.qmu.Unlock()
	if err != nil {
		return err
	}
	return check("vkWaitForFences", vulkan.Result(C.vkl_wait_reset(d.cdev(), C.VkFence(unsafe.Pointer(s.fence)))))
}
