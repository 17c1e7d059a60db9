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

// stage copies data through the staging buffer, chunk by chunk.
func (d *Device) stage(b *Buffer, offset uint64, data []byte, upload bool) error {
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
	cb    vulkan.CommandBuffer
	fence vulkan.Fence
}

func (d *Device) newSubmission() (submission, error) {
	cbs := make([]vulkan.CommandBuffer, 1)
	err := check("vkAllocateCommandBuffers", vulkan.AllocateCommandBuffers(d.dev, &vulkan.CommandBufferAllocateInfo{
		SType: vulkan.StructureTypeCommandBufferAllocateInfo, CommandPool: d.pool,
		Level: vulkan.CommandBufferLevelPrimary, CommandBufferCount: 1,
	}, cbs))
	if err != nil {
		return submission{}, err
	}
	var fence vulkan.Fence
	err = check("vkCreateFence", vulkan.CreateFence(d.dev, &vulkan.FenceCreateInfo{
		SType: vulkan.StructureTypeFenceCreateInfo}, nil, &fence))
	if err != nil {
		vulkan.FreeCommandBuffers(d.dev, d.pool, 1, cbs)
		return submission{}, err
	}
	return submission{cb: cbs[0], fence: fence}, nil
}

// release frees the fence and command buffer; safe on a zero submission.
func (s *submission) release(d *Device) {
	if s.fence != nil {
		vulkan.DestroyFence(d.dev, s.fence, nil)
	}
	if s.cb != nil {
		vulkan.FreeCommandBuffers(d.dev, d.pool, 1, []vulkan.CommandBuffer{s.cb})
	}
	s.cb, s.fence = nil, nil
}

func (d *Device) submitAndWait(s submission) error {
	err := check("vkQueueSubmit", vulkan.QueueSubmit(d.queue, 1, []vulkan.SubmitInfo{{
		SType: vulkan.StructureTypeSubmitInfo, CommandBufferCount: 1, PCommandBuffers: []vulkan.CommandBuffer{s.cb},
	}}, s.fence))
	if err != nil {
		return err
	}
	if err := check("vkWaitForFences", vulkan.WaitForFences(d.dev, 1, []vulkan.Fence{s.fence}, vulkan.True, ^uint64(0))); err != nil {
		return err
	}
	return check("vkResetFences", vulkan.ResetFences(d.dev, 1, []vulkan.Fence{s.fence}))
}
