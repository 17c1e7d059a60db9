package vk

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"errors"
	"fmt"
	"github.com/vklora/vklora/dtype"
	"time"
	"unsafe"

	vulkan "github.com/vulkan-go/vulkan"
)

// Binding is a byte range of a buffer bound to one kernel binding.
type Binding struct {
	buf          *Buffer
	offset, size uint64
}

// Offset is the binding's first byte in its buffer.
func (b Binding) Offset() uint64 { return b.offset }

// Whole binds the entire buffer.
func (b *Buffer) Whole() Binding { return Binding{buf: b, size: b.size} }

// Range binds size bytes from offset; Dispatch checks it lies inside the
// buffer and meets the device's offset alignment.
func (b *Buffer) Range(offset, size uint64) Binding {
	return Binding{buf: b, offset: offset, size: size}
}

// Releaser is anything with an idempotent Release, such as a temporary buffer
// a recorded op must keep alive until the work completes.
type Releaser interface{ Release() }

// maxTimestamps bounds the timestamps one recording may write.
const maxTimestamps = 512

// Recorder records dispatches, barriers and timestamps into one command
// buffer; Submit runs them and waits. Errors found while recording are
// sticky: the first is returned by every later call and by Submit, and the
// recording is then discarded so the device stays usable.
type Recorder struct {
	dev *Device
	submission
	queries  vulkan.QueryPool
	nq       int
	ticks    []uint64
	err      error
	holds    []Releaser
	free     []*Tensor      // held tensors whose memory Reuse may hand out again
	used     []*Buffer      // every buffer a recorded command references
	bindings *C.vkl_binding // C array of MaxBindings, reused per dispatch
	count    int            // dispatches recorded
	released bool
	profile  bool // bracket each dispatch with timestamps
	// dry: Prepare's recorder, which checks commands and records none;
	// prepared lists the kernels its dispatches asked for.
	dry      bool
	prepared []*Kernel
	marks    []profileMark // this recording's bracketed dispatches
	last     []DispatchTime
}

// profileReserve timestamps of a recording are never taken by profiling,
// so that a caller's Timestamp pair still fits when profiling filled the rest.
const profileReserve = 2

type profileMark struct {
	kernel string
	groups [3]uint32
	q0, q1 int
}

// DispatchTime is one profiled dispatch: its kernel, grid and GPU time.
type DispatchTime struct {
	Kernel string
	Groups [3]uint32
	Time   time.Duration
}

// SetProfile turns per-dispatch profiling on or off for the dispatches
// recorded from now on: each is bracketed by timestamps (while the
// recording has room for them), and Profile reports their times after
// Submit. Timestamps wait for earlier work, so dispatches that would
// otherwise overlap are measured one after another: for finding where a
// step's time goes, not for timing the step.
func (r *Recorder) SetProfile(on bool) { r.profile = on }

// Profile returns the profiled dispatches of the last Submit, in order.
func (r *Recorder) Profile() []DispatchTime { return r.last }

// NewRecorder allocates a command buffer and begins recording.
func (d *Device) NewRecorder() (*Recorder, error) {
	if err := d.alive(); err != nil {
		return nil, err
	}
	sub, err := d.newSubmission()
	if err != nil {
		return nil, err
	}
	r := &Recorder{dev: d, submission: sub}
	if d.info.Caps.TimestampValidBits > 0 {
		var cqp C.VkQueryPool
		if err := check("vkCreateQueryPool", vulkan.Result(C.vkl_create_query_pool(d.cdev(), maxTimestamps, &cqp))); err != nil {
			r.destroy()
			return nil, err
		}
		r.queries = vulkan.QueryPool(unsafe.Pointer(cqp))
	}
	r.bindings = (*C.vkl_binding)(C.calloc(MaxBindings, C.sizeof_vkl_binding))
	if err := r.begin(); err != nil {
		r.destroy()
		return nil, err
	}
	d.track("recorder", 1)
	d.adopt(r)
	return r, nil
}

func (r *Recorder) begin() error {
	r.nq, r.count, r.err = 0, 0, nil
	if err := check("vkBeginCommandBuffer", vulkan.Result(C.vkl_begin(C.VkCommandBuffer(unsafe.Pointer(r.cb))))); err != nil {
		return err
	}
	if r.queries != nil {
		vulkan.CmdResetQueryPool(r.cb, r.queries, 0, maxTimestamps)
	}
	return nil
}

func (r *Recorder) fail(err error) error {
	if r.err == nil {
		r.err = err
	}
	return r.err
}

// Err returns the first recording error, if any.
func (r *Recorder) Err() error { return r.err }

// Hold keeps x alive until the recorded work has completed: Submit (or
// Release) releases it. Ops use it for temporaries.
func (r *Recorder) Hold(x Releaser) { r.holds = append(r.holds, x) }

// Recycle says that the last command of this recording to use t has been
// recorded: t must be held by the recording (Hold) or come from Reuse. Its
// memory stays allocated until Submit, but Reuse may hand it to a later
// temporary of the same recording, so that a step's temporaries with
// disjoint lifetimes share memory (the recorder otherwise keeps every one
// until Submit).
func (r *Recorder) Recycle(t *Tensor) error {
	if t == nil || t.Released() {
		return fmt.Errorf("vk: Recycle: tensor is nil or released: %w", ErrInvalidArgument)
	}
	owner := t.root()
	for _, f := range r.free {
		if f == owner {
			// Twice would hand one block to two temporaries.
			return fmt.Errorf("vk: Recycle %s: already recycled in this recording: %w", t, ErrInvalidArgument)
		}
	}
	for _, h := range r.holds {
		if h == Releaser(owner) {
			r.free = append(r.free, owner)
			return nil
		}
	}
	return fmt.Errorf("vk: Recycle %s: not held by this recording: %w", t, ErrInvalidArgument)
}

// Reuse returns a temporary of dtype dt and the given shape over the
// memory of the smallest recycled tensor large enough, after a barrier so
// that the earlier commands that read it finish before anything writes it.
// The result is a view: valid until Submit, its Release does nothing, and
// Recycle takes it back. ok is false when no recycled memory fits; the
// caller then allocates.
func (r *Recorder) Reuse(dt dtype.DType, shape ...int) (*Tensor, bool) {
	if r.err != nil || r.released {
		return nil, false
	}
	n, err := checkShape(dt, shape)
	if err != nil {
		return nil, false
	}
	need := n * uint64(dt.Size())
	best := -1
	for i, t := range r.free {
		if t.buf.size >= need && (best < 0 || t.buf.size < r.free[best].buf.size) {
			best = i
		}
	}
	if best < 0 {
		return nil, false
	}
	t := r.free[best]
	r.free = append(r.free[:best], r.free[best+1:]...)
	v := &Tensor{buf: t.buf, shape: append([]int(nil), shape...), dt: dt, owner: t}
	r.Barrier()
	return v, true
}

// Dispatch records one kernel launch over groups workgroups with the given
// push-constant bytes and buffer bindings (in binding order).
func (r *Recorder) Dispatch(k *Kernel, groups [3]uint32, push []byte, bufs ...Binding) error {
	if r.released {
		return fmt.Errorf("vk: Dispatch: recorder: %w", ErrReleased)
	}
	if r.err != nil {
		return r.err
	}
	s := k.spec
	if k.dev != r.dev {
		return r.fail(fmt.Errorf("vk: Dispatch %s: the kernel belongs to another device than the recorder: %w", s.Name, ErrInvalidArgument))
	}
	if len(bufs) != s.Buffers {
		return r.fail(fmt.Errorf("vk: Dispatch %s: %d buffers bound, kernel takes %d: %w", s.Name, len(bufs), s.Buffers, ErrInvalidArgument))
	}
	if len(push) != s.PushSize {
		return r.fail(fmt.Errorf("vk: Dispatch %s: %d push-constant bytes, kernel takes %d: %w", s.Name, len(push), s.PushSize, ErrInvalidArgument))
	}
	lim := r.dev.info.Caps.MaxWorkgroupCount
	for i, g := range groups {
		if g == 0 || g > lim[i] {
			return r.fail(fmt.Errorf("vk: Dispatch %s: workgroup count %v outside [1,%v]: %w", s.Name, groups, lim, ErrInvalidArgument))
		}
	}
	cb := unsafe.Slice(r.bindings, MaxBindings)
	align := r.dev.info.Caps.MinStorageOffsetAlignment
	for i, b := range bufs {
		if b.buf == nil || b.buf.buf == nil || b.buf.dev != r.dev { // own says which, off the hot path
			return r.fail(r.own(fmt.Sprintf("Dispatch %s: binding %d", s.Name, i), b))
		}
		if err := b.buf.checkRange("Dispatch "+s.Name, b.offset, b.size); err != nil {
			return r.fail(err)
		}
		if align > 0 && b.offset%align != 0 {
			return r.fail(fmt.Errorf("vk: Dispatch %s: binding %d offset %d not a multiple of %d: %w", s.Name, i, b.offset, align, ErrInvalidArgument))
		}
		cb[i] = C.vkl_binding{buffer: C.VkBuffer(unsafe.Pointer(b.buf.buf)), offset: C.VkDeviceSize(b.offset), size: C.VkDeviceSize(b.size)}
	}
	for _, b := range bufs {
		r.use(b.buf)
	}
	if r.dry {
		r.prepared = append(r.prepared, k)
		r.count++
		return nil
	}
	// A kernel that Prepare deferred may still be compiling; its failure
	// is this call's, and leaves the recording as it was.
	if err := k.wait(); err != nil {
		return fmt.Errorf("vk: Dispatch %s: %w", s.Name, err)
	}
	var pp unsafe.Pointer
	if len(push) > 0 {
		pp = unsafe.Pointer(&push[0])
	}
	// Profiling leaves profileReserve timestamps for the recording's own.
	mark := r.profile && r.queries != nil && r.nq+2 <= maxTimestamps-profileReserve
	if mark {
		vulkan.CmdWriteTimestamp(r.cb, vulkan.PipelineStageBottomOfPipeBit, r.queries, uint32(r.nq))
		r.marks = append(r.marks, profileMark{kernel: s.Name, groups: groups, q0: r.nq, q1: r.nq + 1})
		r.nq++
	}
	C.vkl_cmd_dispatch(r.dev.cdev(), C.VkCommandBuffer(unsafe.Pointer(r.cb)), k.pipeline, k.layout.layout,
		r.bindings, C.uint32_t(len(bufs)), pp, C.uint32_t(len(push)),
		C.uint32_t(groups[0]), C.uint32_t(groups[1]), C.uint32_t(groups[2]))
	if mark {
		vulkan.CmdWriteTimestamp(r.cb, vulkan.PipelineStageBottomOfPipeBit, r.queries, uint32(r.nq))
		r.nq++
	}
	r.count++
	return nil
}

// Barrier makes all earlier shader and transfer writes visible to all later
// shader and transfer reads and writes. Record one wherever data flows from
// one dispatch to the next; independent dispatches may run concurrently.
func (r *Recorder) Barrier() {
	if r.err != nil || r.released || r.dry {
		return
	}
	// Compute and transfer stages, shader and transfer reads and writes.
	C.vkl_cmd_barrier(C.VkCommandBuffer(unsafe.Pointer(r.cb)))
}

// Fill sets every 32-bit word of the binding to word (vkCmdFillBuffer).
func (r *Recorder) Fill(b Binding, word uint32) error {
	if r.released {
		return fmt.Errorf("vk: Fill: recorder: %w", ErrReleased)
	}
	if r.err != nil {
		return r.err
	}
	if err := r.own("Fill", b); err != nil {
		return r.fail(err)
	}
	if err := b.buf.checkRange("Fill", b.offset, b.size); err != nil {
		return r.fail(err)
	}
	if b.offset%4 != 0 || b.size%4 != 0 {
		return r.fail(fmt.Errorf("vk: Fill: offset %d and size %d must be multiples of 4: %w", b.offset, b.size, ErrInvalidArgument))
	}
	r.use(b.buf)
	if r.dry {
		return nil
	}
	vulkan.CmdFillBuffer(r.cb, b.buf.buf, vulkan.DeviceSize(b.offset), vulkan.DeviceSize(b.size), word)
	return nil
}

// Copy records a buffer-to-buffer copy of src into dst (equal sizes).
func (r *Recorder) Copy(dst, src Binding) error {
	if r.released {
		return fmt.Errorf("vk: Copy: recorder: %w", ErrReleased)
	}
	if r.err != nil {
		return r.err
	}
	for _, b := range []Binding{src, dst} {
		if err := r.own("Copy", b); err != nil {
			return r.fail(err)
		}
	}
	if err := src.buf.checkRange("Copy src", src.offset, src.size); err != nil {
		return r.fail(err)
	}
	if err := dst.buf.checkRange("Copy dst", dst.offset, dst.size); err != nil {
		return r.fail(err)
	}
	if src.size != dst.size {
		return r.fail(fmt.Errorf("vk: Copy: src %d bytes, dst %d bytes: %w", src.size, dst.size, ErrInvalidArgument))
	}
	r.use(src.buf, dst.buf)
	if r.dry {
		return nil
	}
	C.vkl_cmd_copy(C.VkCommandBuffer(unsafe.Pointer(r.cb)), C.VkBuffer(unsafe.Pointer(src.buf.buf)), C.VkBuffer(unsafe.Pointer(dst.buf.buf)),
		C.VkDeviceSize(src.offset), C.VkDeviceSize(dst.offset), C.VkDeviceSize(src.size))
	return nil
}

// Timestamp records a GPU timestamp after all earlier work and returns its
// index for Elapsed. Devices without timestamps return ErrUnsupported.
func (r *Recorder) Timestamp() (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.queries == nil {
		return 0, fmt.Errorf("vk: Timestamp: compute queue of %s has no timestamps: %w", r.dev.info.Name, ErrUnsupported)
	}
	if r.nq >= maxTimestamps {
		return 0, r.fail(fmt.Errorf("vk: Timestamp: more than %d in one recording: %w", maxTimestamps, ErrInvalidArgument))
	}
	if !r.dry {
		vulkan.CmdWriteTimestamp(r.cb, vulkan.PipelineStageBottomOfPipeBit, r.queries, uint32(r.nq))
	}
	r.nq++
	return r.nq - 1, nil
}

// Dispatches is the number of dispatches recorded since the last Submit.
func (r *Recorder) Dispatches() int { return r.count }

// Submit ends the recording, runs it, waits for completion, reads the
// timestamps, releases held temporaries, and begins a new recording, so one
// Recorder serves many submissions.
func (r *Recorder) Submit() error {
	if r.released {
		return fmt.Errorf("vk: Submit: recorder: %w", ErrReleased)
	}
	defer r.releaseHolds()
	r.last = nil // a failed Submit leaves no stale profile behind
	if r.err != nil {
		err := r.err
		r.restart()
		return err
	}
	// A buffer released after a command that uses it was recorded (an
	// error path that freed its temporaries, or a caller's early Release)
	// must never reach the GPU: the recording is discarded instead.
	for _, b := range r.used {
		if b.buf == nil {
			r.restart()
			return fmt.Errorf("vk: Submit: a buffer used by a recorded command was released before Submit; the recording is discarded: %w", ErrReleased)
		}
	}
	if r.dry { // Prepare's: nothing to run, no timestamps to read
		r.ticks = r.ticks[:0]
		return r.restart()
	}
	if err := check("vkEndCommandBuffer", vulkan.EndCommandBuffer(r.cb)); err != nil {
		r.restart()
		return err
	}
	if err := r.dev.submitAndWait(r.submission); err != nil {
		if errors.Is(err, ErrDeviceLost) {
			r.marks = r.marks[:0]
			return err
		}
		r.restart()
		return err
	}
	r.ticks = r.ticks[:0]
	if r.nq > 0 {
		r.ticks = make([]uint64, r.nq)
		flags := vulkan.QueryResultFlags(vulkan.QueryResult64Bit | vulkan.QueryResultWaitBit)
		if err := check("vkGetQueryPoolResults", vulkan.GetQueryPoolResults(r.dev.dev, r.queries, 0, uint32(r.nq),
			uint(8*r.nq), unsafe.Pointer(&r.ticks[0]), 8, flags)); err != nil {
			r.restart()
			return err
		}
	}
	r.last = nil // a fresh slice: callers may keep the previous one
	for _, m := range r.marks {
		d, err := r.Elapsed(m.q0, m.q1)
		if err != nil {
			r.restart()
			return err
		}
		r.last = append(r.last, DispatchTime{Kernel: m.kernel, Groups: m.groups, Time: d})
	}
	return r.restart()
}

func (r *Recorder) restart() error {
	r.marks = r.marks[:0]
	r.dropUsed()
	vulkan.ResetCommandBuffer(r.cb, 0)
	return r.begin()
}

func (r *Recorder) releaseHolds() {
	r.free = r.free[:0]
	for _, h := range r.holds {
		h.Release()
	}
	r.holds = r.holds[:0]
}

// Elapsed is the GPU time between timestamps from and to of the last Submit.
func (r *Recorder) Elapsed(from, to int) (time.Duration, error) {
	if from < 0 || to < 0 || from >= len(r.ticks) || to >= len(r.ticks) {
		return 0, fmt.Errorf("vk: Elapsed(%d, %d): the last submission wrote %d timestamps: %w", from, to, len(r.ticks), ErrInvalidArgument)
	}
	bits := r.dev.info.Caps.TimestampValidBits
	mask := ^uint64(0)
	if bits < 64 {
		mask = (uint64(1) << bits) - 1
	}
	ticks := (r.ticks[to] - r.ticks[from]) & mask
	return time.Duration(float64(ticks) * float64(r.dev.info.Caps.TimestampPeriod)), nil
}

// Release frees the recorder (waiting for nothing: Submit already waited).
// Recorded but unsubmitted work is discarded. Safe to call twice.
func (r *Recorder) Release() {
	if r == nil || r.released {
		return
	}
	r.releaseHolds()
	r.destroy()
	r.dev.track("recorder", -1)
	r.dev.disown(r)
}

func (r *Recorder) destroy() {
	d := r.dev
	r.dropUsed() // unsubmitted work is discarded
	if r.queries != nil {
		vulkan.DestroyQueryPool(d.dev, r.queries, nil)
	}
	r.submission.release(d)
	if r.bindings != nil {
		C.free(unsafe.Pointer(r.bindings))
	}
	r.queries, r.bindings = nil, nil
	r.released = true
}

// own refuses a binding whose buffer is missing, released, or of another
// device than the recorder's: the driver would be handed a foreign handle.
func (r *Recorder) own(op string, b Binding) error {
	if b.buf == nil || b.buf.buf == nil {
		return fmt.Errorf("vk: %s: buffer is nil or released: %w", op, ErrInvalidArgument)
	}
	if b.buf.dev != r.dev {
		return fmt.Errorf("vk: %s: the buffer belongs to another device than the recorder: %w", op, ErrInvalidArgument)
	}
	return nil
}

// Device is the device the recorder records for.
func (r *Recorder) Device() *Device { return r.dev }

// use records that the commands being recorded use bufs (see
// Buffer.pending).
func (r *Recorder) use(bufs ...*Buffer) {
	for _, b := range bufs {
		b.pending.Add(1)
	}
	r.used = append(r.used, bufs...)
}

// dropUsed forgets the recorded commands' buffers: after Submit ran them,
// or when the recording is discarded.
func (r *Recorder) dropUsed() {
	for _, b := range r.used {
		b.pending.Add(-1)
	}
	clear(r.used) // drop the references, so released buffers can be collected
	r.used = r.used[:0]
}

// Close is Release as an io.Closer.
func (r *Recorder) Close() error { r.Release(); return nil }
