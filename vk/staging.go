package vk

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
	if s != nil && s.buf.size >= n {
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
		s.buf = nil
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
			vulkan.CmdCopyBuffer(cb, src, dst, 1, []vulkan.BufferCopy{region})
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
	if err := check("vkBeginCommandBuffer", vulkan.BeginCommandBuffer(s.cb, &vulkan.CommandBufferBeginInfo{
		SType: vulkan.StructureTypeCommandBufferBeginInfo,
		Flags: vulkan.CommandBufferUsageFlags(vulkan.CommandBufferUsageOneTimeSubmitBit),
	})); err != nil {
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
	var pool vulkan.CommandPool
	err := check("vkCreateCommandPool", vulkan.CreateCommandPool(d.dev, &vulkan.CommandPoolCreateInfo{
		SType:            vulkan.StructureTypeCommandPoolCreateInfo,
		Flags:            vulkan.CommandPoolCreateFlags(vulkan.CommandPoolCreateResetCommandBufferBit),
		QueueFamilyIndex: d.info.Caps.QueueFamily,
	}, nil, &pool))
	if err != nil {
		return submission{}, err
	}
	cbs := make([]vulkan.CommandBuffer, 1)
	err = check("vkAllocateCommandBuffers", vulkan.AllocateCommandBuffers(d.dev, &vulkan.CommandBufferAllocateInfo{
		SType: vulkan.StructureTypeCommandBufferAllocateInfo, CommandPool: pool,
		Level: vulkan.CommandBufferLevelPrimary, CommandBufferCount: 1,
	}, cbs))
	if err != nil {
		vulkan.DestroyCommandPool(d.dev, pool, nil)
		return submission{}, err
	}
	var fence vulkan.Fence
	err = check("vkCreateFence", vulkan.CreateFence(d.dev, &vulkan.FenceCreateInfo{
		SType: vulkan.StructureTypeFenceCreateInfo}, nil, &fence))
	if err != nil {
		vulkan.DestroyCommandPool(d.dev, pool, nil) // frees its command buffer too
		return submission{}, err
	}
	return submission{pool: pool, cb: cbs[0], fence: fence}, nil
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
	err := check("vkQueueSubmit", vulkan.QueueSubmit(d.queue, 1, []vulkan.SubmitInfo{{
		SType: vulkan.StructureTypeSubmitInfo, CommandBufferCount: 1, PCommandBuffers: []vulkan.CommandBuffer{s.cb},
	}}, s.fence))
	d.qmu.Unlock()
	if err != nil {
		return err
	}
	if err := check("vkWaitForFences", vulkan.WaitForFences(d.dev, 1, []vulkan.Fence{s.fence}, vulkan.True, ^uint64(0))); err != nil {
		return err
	}
	return check("vkResetFences", vulkan.ResetFences(d.dev, 1, []vulkan.Fence{s.fence}))
}
