// Package vk is the engine's only contact with Vulkan: the one package that
// imports github.com/vulkan-go/vulkan and uses cgo (a small C shim, shim.c
// and shim_device.c, builds the feature and property chains the vulkan-go
// 1.1 headers lack: Vulkan 1.2/1.3 features, subgroup size control,
// cooperative matrices, bf16). Everything above it speaks in these types:
//
//   - Device (Open, Devices): one logical device with its compute queue, and
//     Caps, what it can do, probed once (subgroup size, shared memory,
//     VK_KHR_cooperative_matrix shapes, VK_NV_cooperative_matrix2 limits and
//     flexible-dimension configurations, bf16).
//   - Buffer and Tensor: device-local storage, uploads and downloads through
//     staging; Tensor.View borrows a tensor's memory under another shape.
//     A released buffer's memory waits in the device's buffer cache for a
//     later buffer of the same size (Options.BufferCacheBytes; on by
//     default on GPUs with memory of their own), so that a training loop's
//     per-step temporaries are not allocated afresh every step.
//   - Kernel (Device.ShaderKernel): a compute pipeline from the embedded
//     SPIR-V registry, with its specialization constants; cached per device.
//     A kernel is built when a recording first asks for it, one at a time;
//     Device.Prepare runs a recording dry (checked, not recorded, not run)
//     to build all of its kernels in parallel first, since one large
//     cooperative-matrix kernel can take a driver tens of seconds.
//     KernelBuilds and Options.KernelLog report the builds, and
//     Options.PipelineCacheDir keeps the compiled kernels in a file between
//     processes, for where the driver's own disk cache does not survive.
//   - Recorder: dispatches, barriers and timestamps in one command buffer;
//     Submit runs and waits. Hold keeps temporaries alive until Submit;
//     Recycle and Reuse let a recording's temporaries with disjoint
//     lifetimes share memory; SetProfile times every dispatch.
//
// Every Vulkan result is checked and wrapped with the call's name
// (ResultError, which matches the Err* sentinels with errors.Is). Every
// resource has an idempotent Release (and Close, as an io.Closer). Errors
// found while recording are sticky: Submit returns them and discards the
// recording, so the device stays usable.
//
// The rules that keep a misuse from reaching the driver:
//   - A recorder refuses kernels and buffers of another device.
//   - A buffer that an unsubmitted recording uses cannot be read back
//     (ErrPending): the read would return stale data.
//   - Device.Release releases whatever its owner left live and reports it;
//     their later calls return ErrReleased.
//   - Options.KernelStatistics keeps each pipeline's compile statistics
//     (Kernel.Statistics: registers, local memory), where the driver has
//     VK_KHR_pipeline_executable_properties.
//   - Devices are safe for concurrent use: each Recorder (and the staging
//     area) has its own command pool, queue submits are serialized, the
//     kernel cache is locked. One Recorder is for one goroutine at a time.
//
// Device.Faults is a test hook (fault.go): it counts the device's buffer
// creations, memory allocations and mappings, shader-module and pipeline
// creations and queue submits, and makes the k-th of one kind fail with
// the result a driver would return (VK_ERROR_OUT_OF_DEVICE_MEMORY and so
// on), so that tests reach every error path; until a test installs it, it
// costs one atomic load per such call.
//
// # Which calls bypass vulkan-go
//
// vulkan-go converts each Go create-info struct into C memory that some of
// its wrappers never free (CreateBuffer, AllocateMemory,
// BeginCommandBuffer, about 3 KB of C heap per training step in all), and
// QueueSubmit's SubmitInfo packing stores Go pointers in C memory, which
// GOEXPERIMENT=cgocheck2 refuses. Every call made per step therefore goes
// through the shim with its structs on the C stack: buffer creation,
// allocation, binding, mapping and destruction, command pools and buffers,
// fences, query pools, begin, submit, wait, barriers and copies
// (vkl_create_buffer … vkl_cmd_copy in shim.c). So does each device's
// set-up: its wrappers of vkGetPhysicalDeviceMemoryProperties and
// vkCreatePipelineCache kept their C copies, 2.7 KB per Open; the shim's
// vkCreatePipelineCache also takes the cache file's data, and
// vkGetPipelineCacheData runs its two-call idiom in C. vulkan-go
// still serves the calls with scalar arguments and the instance's set-up;
// the instance, device, pipelines and dispatches were already the shim's.
package vk
