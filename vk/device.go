package vk

// #include "shim.h"
import "C"

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	vulkan "github.com/vulkan-go/vulkan"
)

// Options chooses and configures the device Open returns.
type Options struct {
	// Select is a device index or a case-insensitive name substring. Empty
	// means the first discrete GPU, else integrated, else any other, else a
	// CPU (software) device. (lorabench fills it from -device or
	// $VKLORA_DEVICE; the library reads no environment.)
	Select string
	// Validation enables VK_LAYER_KHRONOS_validation when it is installed,
	// for the process's instance: whichever Open creates it decides.
	Validation bool
	// KernelStatistics asks the driver to keep each kernel's compile
	// statistics (registers, spills, shared memory, where it reports them)
	// for Kernel.Statistics. Only where Caps.PipelineStatistics; it may
	// slow pipeline creation, so it is off by default.
	KernelStatistics bool
	// BufferCacheBytes bounds the device memory that released buffers keep
	// for reuse by later buffers of the same size (CachedBytes,
	// FreeCachedBuffers): a training loop's temporaries recur every step.
	// 0 means a quarter of the device-local memory (Caps.DeviceLocalBytes)
	// on a GPU with memory of its own, and none on CPU and integrated
	// devices, whose device memory is host memory; negative means no
	// cache. A buffer that cannot be allocated frees the cache and tries
	// once more.
	BufferCacheBytes int64
	// KernelLog, when set, gets one line per kernel the device builds: its
	// name, specialization constants and the driver's compile time. The
	// CLIs set it from VKLORA_LOG_KERNELS=1, to find which kernels make a
	// cold first step slow (KernelBuilds has the totals).
	KernelLog io.Writer
	// PipelineCacheDir, when set, keeps the driver's compiled kernels in a
	// file of this directory between processes, one file per device and
	// driver build (pipecache.go; Device.PipelineCacheFile names it): Open
	// seeds the device's pipeline cache from it (a missing, unreadable,
	// damaged or foreign file is ignored, and logged to KernelLog), and
	// Release and SavePipelineCache write it back (only SavePipelineCache
	// reports a failure). For where the driver's own disk cache does not
	// survive (containers, fresh machines); the CLIs default to
	// os.UserCacheDir()/vklora/pipelines.
	PipelineCacheDir string
}

// Device is an open logical device with one compute queue. A Device and the
// objects made from it may be used from several goroutines: kernels are
// built once under a lock, submissions to the queue are serialized, and each
// Recorder has its own command pool. One Recorder, like one Tensor being
// written, is for one goroutine at a time.
type Device struct {
	info    DeviceInfo
	phys    C.VkPhysicalDevice
	dev     vulkan.Device
	queue   vulkan.Queue
	cache   vulkan.PipelineCache
	mem     memoryTypes
	layouts map[layoutKey]*pipelineLayout
	kernels map[string]*Kernel
	staging *stagingArea
	bufs    bufferCache                   // released buffers' memory, for reuse (bufcache.go)
	stats   bool                          // pipelines capture their statistics (Options.KernelStatistics)
	faults  atomic.Pointer[FaultInjector] // the fault-injection test hook (fault.go); nil in production

	qmu sync.Mutex // the queue: one submit at a time
	smu sync.Mutex // the staging area: one transfer at a time

	pcmu   sync.Mutex // saves of the pipeline cache file, and pcSum
	pcFile string     // in Options.PipelineCacheDir; "" for none
	pcSum  [32]byte   // SHA-256 of the payload loaded or last saved: an unchanged cache is not rewritten

	kmu    sync.Mutex // kernels, layouts, builds and deferring
	builds KernelBuilds
	klog   io.Writer // Options.KernelLog
	// Prepare's parallel builds (prepare.go): while deferring > 0, kernels
	// are handed out unbuilt; building counts the builds running,
	// buildSlots bounds them.
	deferring  int
	building   sync.WaitGroup
	buildSlots chan struct{}

	mu        sync.Mutex
	live      map[string]int // live objects by kind, for leak reports
	children  map[child]bool // live buffers and recorders, invalidated by Release
	allocated uint64         // bytes of device memory held by buffers now
	peak      uint64
	released  bool
}

// Open creates a logical device on the selected physical device.
func Open(opts Options) (*Device, error) {
	if err := acquireInstance(opts.Validation); err != nil {
		return nil, err
	}
	d, err := open(opts)
	if err != nil {
		releaseInstance()
		return nil, err
	}
	return d, nil
}

func open(opts Options) (*Device, error) {
	global.mu.Lock()
	infos, phys, inst := global.infos, global.phys, global.handle
	global.mu.Unlock()
	idx, err := selectDevice(infos, opts.Select)
	if err != nil {
		return nil, err
	}
	info := infos[idx]
	if !info.Caps.PushDescriptor {
		return nil, fmt.Errorf("vk: device %q lacks VK_KHR_push_descriptor, which the engine needs: %w", info.Name, ErrUnsupported)
	}
	if info.Caps.QueueFamily == ^uint32(0) {
		return nil, fmt.Errorf("vk: device %q has no compute queue: %w", info.Name, ErrUnsupported)
	}
	var c C.vkl_caps
	C.vkl_probe(inst, phys[idx], &c)
	var cdev C.VkDevice
	if err := check("vkCreateDevice", vulkan.Result(C.vkl_create_device(inst, phys[idx], &c, &cdev))); err != nil {
		return nil, fmt.Errorf("%w (device %s)", err, info.Name)
	}
	d := &Device{
		info: info, phys: phys[idx], dev: vulkan.Device(unsafe.Pointer(cdev)),
		layouts: map[layoutKey]*pipelineLayout{}, kernels: map[string]*Kernel{}, live: map[string]int{},
		stats: opts.KernelStatistics && info.Caps.PipelineStatistics,
		klog:  opts.KernelLog, buildSlots: newBuildSlots(), pcFile: pipelineCacheFile(opts.PipelineCacheDir, &info),
	}
	if err := d.init(); err != nil {
		d.destroy()
		return nil, err
	}
	d.bufs.limit = bufferCacheLimit(opts.BufferCacheBytes, d.mem, &d.info.Caps)
	return d, nil
}

func (d *Device) init() error {
	var queue vulkan.Queue
	vulkan.GetDeviceQueue(d.dev, d.info.Caps.QueueFamily, 0, &queue)
	d.queue = queue
	if err := d.openPipelineCache(); err != nil { // pipecache.go
		return err
	}
	d.mem = probeMemoryTypes(d.phys, d.info.Type)
	return nil
}

// selectDevice applies Options.Select, or the default order.
func selectDevice(infos []DeviceInfo, sel string) (int, error) {
	if len(infos) == 0 {
		return 0, fmt.Errorf("vk: no Vulkan physical devices found: %w (install mesa-vulkan-drivers for the lavapipe CPU device)", ErrNoDevice)
	}
	if sel != "" {
		if i, err := strconv.Atoi(sel); err == nil {
			if i < 0 || i >= len(infos) {
				return 0, fmt.Errorf("vk: device index %d out of range [0,%d): %w", i, len(infos), ErrNoDevice)
			}
			return i, nil
		}
		for i, inf := range infos {
			if strings.Contains(strings.ToLower(inf.Name), strings.ToLower(sel)) {
				return i, nil
			}
		}
		names := make([]string, len(infos))
		for i, inf := range infos {
			names[i] = fmt.Sprintf("%d: %s", i, inf.Name)
		}
		return 0, fmt.Errorf("vk: no device matches %q (have %s): %w", sel, strings.Join(names, "; "), ErrNoDevice)
	}
	rank := map[DeviceType]int{DeviceDiscrete: 0, DeviceIntegrated: 1, DeviceVirtual: 2, DeviceOther: 3, DeviceCPU: 4}
	order := make([]int, len(infos))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return rank[infos[order[a]].Type] < rank[infos[order[b]].Type] })
	return order[0], nil
}

// Info describes the physical device.
func (d *Device) Info() DeviceInfo { return d.info }

// Caps is the device's probed capabilities.
func (d *Device) Caps() *Caps { return &d.info.Caps }

func (d *Device) track(kind string, delta int) {
	d.mu.Lock()
	d.live[kind] += delta
	if d.live[kind] == 0 {
		delete(d.live, kind)
	}
	d.mu.Unlock()
}

// Live counts the objects made from this device that are not yet released,
// by kind ("buffer", "recorder", …). Kernels belong to the device and are
// not counted.
func (d *Device) Live() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]int, len(d.live))
	for k, v := range d.live {
		out[k] = v
	}
	return out
}

// MemoryStats returns the bytes of device memory held by buffers now and the
// peak since Open or the last ResetPeak.
func (d *Device) MemoryStats() (current, peak uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.allocated, d.peak
}

// ResetPeak sets the peak to the current allocation.
func (d *Device) ResetPeak() {
	d.mu.Lock()
	d.peak = d.allocated
	d.mu.Unlock()
}

func (d *Device) account(delta int64) {
	d.mu.Lock()
	d.allocated = uint64(int64(d.allocated) + delta)
	if d.allocated > d.peak {
		d.peak = d.allocated
	}
	d.mu.Unlock()
}

// Release waits for the device to go idle and destroys it with its kernels.
// It reports objects that were never released (a leak in the caller) as an
// error, and releases them first: a tensor or recorder of a released device
// reports Released and its calls return ErrReleased. It is safe to call
// twice.
func (d *Device) Release() error {
	if d == nil || d.released {
		return nil
	}
	var leakErr error
	if live := d.Live(); len(live) > 0 {
		leakErr = fmt.Errorf("vk: device %s released with live objects %v (released with it: later calls on them return ErrReleased)", d.info.Name, live)
	}
	// Recorders first: they hold temporaries that are buffers.
	for _, recorders := range []bool{true, false} {
		for _, c := range d.liveChildren() {
			if _, isRec := c.(*Recorder); isRec == recorders {
				c.Release()
			}
		}
	}
	// The kernels this process compiled, for the next one (pipecache.go);
	// a cache that cannot be saved fails nothing.
	if d.pcFile != "" && d.KernelBuilds().Kernels > 0 {
		if err := d.SavePipelineCache(); err != nil && d.klog != nil {
			fmt.Fprintf(d.klog, "%v\n", err)
		}
	}
	d.destroy()
	releaseInstance()
	return leakErr
}

func (d *Device) destroy() {
	d.building.Wait() // a Prepare's builds still compiling
	if d.dev != nil {
		vulkan.DeviceWaitIdle(d.dev)
	}
	if d.staging != nil {
		d.staging.release(d)
		d.staging = nil
	}
	d.bufs.flush(d)
	for k, kern := range d.kernels {
		kern.destroy(d)
		delete(d.kernels, k)
	}
	for k, l := range d.layouts {
		l.destroy(d)
		delete(d.layouts, k)
	}
	if d.cache != nil {
		vulkan.DestroyPipelineCache(d.dev, d.cache, nil)
		d.cache = nil
	}
	if d.dev != nil {
		vulkan.DestroyDevice(d.dev, nil)
		d.dev = nil
	}
	d.released = true
}

func (d *Device) alive() error {
	if d == nil || d.released {
		return fmt.Errorf("vk: device: %w", ErrReleased)
	}
	return nil
}

// Released reports whether Release has run (a nil device counts as
// released): a released device refuses every call.
func (d *Device) Released() bool { return d == nil || d.released }

// child is a device object that Device.Release releases if its owner has
// not: so that no later call reaches the driver with a destroyed handle.
type child interface{ Release() }

func (d *Device) adopt(c child) {
	d.mu.Lock()
	if d.children == nil {
		d.children = map[child]bool{}
	}
	d.children[c] = true
	d.mu.Unlock()
}

func (d *Device) disown(c child) {
	d.mu.Lock()
	delete(d.children, c)
	d.mu.Unlock()
}

func (d *Device) liveChildren() []child {
	d.mu.Lock()
	defer d.mu.Unlock()
	cs := make([]child, 0, len(d.children))
	for c := range d.children {
		cs = append(cs, c)
	}
	return cs
}

// Close is Release as an io.Closer: it returns Release's report of live
// objects, which a bare `defer dev.Release()` would drop.
func (d *Device) Close() error { return d.Release() }
