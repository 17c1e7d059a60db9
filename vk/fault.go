package vk

import (
	"fmt"
	"sync"

	vulkan "github.com/vulkan-go/vulkan"
)

// This file is a test hook: fault injection. Production code never calls
// Device.Faults; until a test does, each guarded call below costs one
// atomic pointer load.

// FaultKind is a Vulkan call that a FaultInjector can make fail. An
// injected failure takes the place of the call (the driver is not called)
// and returns the result a driver returns when it runs out of what the call
// needs, so that it takes the error path a real failure takes: the same
// ResultError, naming the call, matching the same sentinel.
type FaultKind int

const (
	// FaultCreateBuffer: vkCreateBuffer returns
	// VK_ERROR_OUT_OF_DEVICE_MEMORY (ErrOutOfDeviceMemory).
	FaultCreateBuffer FaultKind = iota
	// FaultAllocateMemory: vkAllocateMemory, after vkCreateBuffer
	// succeeded, returns VK_ERROR_OUT_OF_DEVICE_MEMORY
	// (ErrOutOfDeviceMemory).
	FaultAllocateMemory
	// FaultMapMemory: vkMapMemory of a host-visible buffer (every buffer on
	// lavapipe and integrated GPUs, the staging buffer elsewhere) returns
	// VK_ERROR_MEMORY_MAP_FAILED (ErrMemoryMapFailed).
	FaultMapMemory
	// FaultCreateShaderModule: vkCreateShaderModule of a kernel not yet
	// built returns VK_ERROR_OUT_OF_HOST_MEMORY (ErrOutOfHostMemory).
	FaultCreateShaderModule
	// FaultCreatePipeline: vkCreateComputePipelines, after its shader
	// module was created, returns VK_ERROR_OUT_OF_HOST_MEMORY
	// (ErrOutOfHostMemory).
	FaultCreatePipeline
	// FaultQueueSubmit: vkQueueSubmit (a Recorder's Submit, or a staging
	// copy) returns VK_ERROR_OUT_OF_DEVICE_MEMORY (ErrOutOfDeviceMemory).
	FaultQueueSubmit
	numFaultKinds
)

// FaultKinds lists every kind, in order.
var FaultKinds = []FaultKind{FaultCreateBuffer, FaultAllocateMemory, FaultMapMemory,
	FaultCreateShaderModule, FaultCreatePipeline, FaultQueueSubmit}

var faultCalls = [numFaultKinds]string{"vkCreateBuffer", "vkAllocateMemory", "vkMapMemory",
	"vkCreateShaderModule", "vkCreateComputePipelines", "vkQueueSubmit"}

var faultResults = [numFaultKinds]vulkan.Result{vulkan.ErrorOutOfDeviceMemory, vulkan.ErrorOutOfDeviceMemory,
	vulkan.ErrorMemoryMapFailed, vulkan.ErrorOutOfHostMemory, vulkan.ErrorOutOfHostMemory, vulkan.ErrorOutOfDeviceMemory}

// String is the Vulkan call, e.g. "vkAllocateMemory".
func (k FaultKind) String() string {
	if k < 0 || k >= numFaultKinds {
		return fmt.Sprintf("FaultKind(%d)", int(k))
	}
	return faultCalls[k]
}

// FaultInjector is the fault-injection test hook of one device
// (Device.Faults): it counts the device's calls of each FaultKind and
// makes a chosen one fail. It is safe for concurrent use.
type FaultInjector struct {
	mu       sync.Mutex
	calls    [numFaultKinds]int
	failAt   [numFaultKinds]int // the call count that fails; 0: none
	injected [numFaultKinds]int
}

// Faults returns d's fault injector, installing it on the first call: a
// test hook. From then on the device counts its calls of every FaultKind.
func (d *Device) Faults() *FaultInjector {
	if f := d.faults.Load(); f != nil {
		return f
	}
	d.faults.CompareAndSwap(nil, &FaultInjector{})
	return d.faults.Load()
}

// Calls is how many calls of kind the device has made (or had fail) since
// the injector was installed or last Reset.
func (f *FaultInjector) Calls(kind FaultKind) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[kind]
}

// FailAt makes the k-th call of kind from now on (k ≥ 1) fail, once; the
// calls after it run normally. k = 0 cancels a pending failure of kind.
func (f *FaultInjector) FailAt(kind FaultKind, k int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failAt[kind] = 0
	if k > 0 {
		f.failAt[kind] = f.calls[kind] + k
	}
}

// Injected is how many failures of kind the injector has injected since it
// was installed or last Reset.
func (f *FaultInjector) Injected(kind FaultKind) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.injected[kind]
}

// Reset zeroes the counts and cancels every pending failure.
func (f *FaultInjector) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls, f.failAt, f.injected = [numFaultKinds]int{}, [numFaultKinds]int{}, [numFaultKinds]int{}
}

// call counts one call of kind and returns the injected result, or
// Success when the call is to run.
func (f *FaultInjector) call(kind FaultKind) vulkan.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[kind]++
	if f.calls[kind] != f.failAt[kind] {
		return vulkan.Success
	}
	f.failAt[kind] = 0
	f.injected[kind]++
	return faultResults[kind]
}

// fault is what a guarded call of kind does first: Success (call the
// driver) unless a test's injector fails this call.
func (d *Device) fault(kind FaultKind) vulkan.Result {
	f := d.faults.Load()
	if f == nil {
		return vulkan.Success
	}
	return f.call(kind)
}
