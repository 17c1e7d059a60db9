package vk

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"fmt"
	"sort"
	"time"
	"unsafe"

	vulkan "github.com/vulkan-go/vulkan"

	"github.com/vklora/vklora/shaders"
)

// MaxBindings is the most storage buffers one kernel binds.
const MaxBindings = 16

// KernelSpec describes one compute pipeline: a SPIR-V module, how many
// storage buffers it binds (set 0, bindings 0..Buffers-1), the exact size of
// its push-constant block, and its specialization constants (ids 0..n-1, all
// 32-bit). Dispatch checks calls against it.
type KernelSpec struct {
	Name         string
	SPIRV        []uint32
	Buffers      int
	PushSize     int
	Spec         []uint32
	SubgroupSize uint32 // required subgroup size, 0 for the driver's choice
}

// Kernel is a compute pipeline owned by its Device: it lives until the device
// is released, and Device.Kernel returns the same one for the same spec.
type Kernel struct {
	dev      *Device
	spec     KernelSpec
	layout   *pipelineLayout
	pipeline C.VkPipeline
	module   C.VkShaderModule
	// ready is closed when a build that Prepare deferred is done, with err
	// its failure; nil for a kernel built when it was asked for.
	ready chan struct{}
	err   error
}

// Spec returns what the kernel was built from.
func (k *Kernel) Spec() KernelSpec { return k.spec }

type layoutKey struct{ buffers, push int }

type pipelineLayout struct {
	set    C.VkDescriptorSetLayout
	layout C.VkPipelineLayout
}

func (l *pipelineLayout) destroy(d *Device) {
	vulkan.DestroyPipelineLayout(d.dev, vulkan.PipelineLayout(unsafe.Pointer(l.layout)), nil)
	vulkan.DestroyDescriptorSetLayout(d.dev, vulkan.DescriptorSetLayout(unsafe.Pointer(l.set)), nil)
}

func (d *Device) cdev() C.VkDevice { return C.VkDevice(unsafe.Pointer(d.dev)) }

func (d *Device) layoutFor(buffers, push int) (*pipelineLayout, error) {
	key := layoutKey{buffers, push}
	if l, ok := d.layouts[key]; ok {
		return l, nil
	}
	l := &pipelineLayout{}
	r := C.vkl_create_layout(d.cdev(), C.uint32_t(buffers), C.uint32_t(push), &l.set, &l.layout)
	if err := check("vkCreatePipelineLayout", vulkan.Result(r)); err != nil {
		return nil, err
	}
	d.layouts[key] = l
	return l, nil
}

func kernelKey(s KernelSpec) string {
	return fmt.Sprintf("%s|%v|%d|%d|%d", s.Name, s.Spec, s.SubgroupSize, s.Buffers, s.PushSize)
}

// Kernel returns the pipeline for spec, building it on first use. It is
// safe for concurrent use: builds are serialized, except inside
// Device.Prepare, which builds them in parallel.
func (d *Device) Kernel(spec KernelSpec) (*Kernel, error) {
	if err := d.alive(); err != nil {
		return nil, err
	}
	d.kmu.Lock()
	defer d.kmu.Unlock()
	key := kernelKey(spec)
	if k, ok := d.kernels[key]; ok {
		return k, nil
	}
	switch {
	case len(spec.SPIRV) < 5 || spec.SPIRV[0] != 0x07230203:
		return nil, fmt.Errorf("vk: kernel %s: not a SPIR-V module: %w", spec.Name, ErrInvalidArgument)
	case spec.Buffers < 0 || spec.Buffers > MaxBindings:
		return nil, fmt.Errorf("vk: kernel %s: %d buffers, at most %d: %w", spec.Name, spec.Buffers, MaxBindings, ErrInvalidArgument)
	case spec.PushSize%4 != 0 || spec.PushSize > int(d.info.Caps.MaxPushConstants):
		return nil, fmt.Errorf("vk: kernel %s: push constants of %d bytes (device allows %d, multiple of 4): %w",
			spec.Name, spec.PushSize, d.info.Caps.MaxPushConstants, ErrInvalidArgument)
	case len(spec.Spec) > 32:
		return nil, fmt.Errorf("vk: kernel %s: %d specialization constants, at most 32: %w", spec.Name, len(spec.Spec), ErrInvalidArgument)
	}
	l, err := d.layoutFor(spec.Buffers, spec.PushSize)
	if err != nil {
		return nil, err
	}
	k := &Kernel{dev: d, spec: spec, layout: l}
	if d.deferring > 0 {
		d.buildLater(key, k) // prepare.go
		return k, nil
	}
	took, err := d.compile(k)
	if err != nil {
		return nil, err
	}
	d.noteBuild(k, took)
	d.kernels[key] = k
	return k, nil
}

// compile creates k's shader module and pipeline. It touches no device
// state, so that Prepare's builds run it in parallel, without kmu.
func (d *Device) compile(k *Kernel) (time.Duration, error) {
	spec := k.spec
	var specPtr *C.uint32_t
	if len(spec.Spec) > 0 {
		specPtr = (*C.uint32_t)(C.CBytes(u32Bytes(spec.Spec)))
		defer C.free(unsafe.Pointer(specPtr))
	}
	code := C.CBytes(u32Bytes(spec.SPIRV))
	defer C.free(code)
	// A test's injected failure (fault.go) stands in for one of the two
	// calls; the shim destroys the module when the pipeline fails.
	failModule, failPipeline := d.fault(FaultCreateShaderModule), vulkan.Success
	if failModule == vulkan.Success {
		failPipeline = d.fault(FaultCreatePipeline)
	}
	var stage C.int
	t0 := time.Now()
	r := C.vkl_create_pipeline(d.cdev(), C.VkPipelineCache(unsafe.Pointer(d.cache)), k.layout.layout,
		(*C.uint32_t)(code), C.size_t(4*len(spec.SPIRV)), specPtr, C.uint32_t(len(spec.Spec)),
		C.uint32_t(spec.SubgroupSize), C.int(b2i(d.stats)), C.VkResult(failModule), C.VkResult(failPipeline),
		&k.pipeline, &k.module, &stage)
	took := time.Since(t0)
	call := "vkCreateComputePipelines"
	if stage == 1 {
		call = "vkCreateShaderModule"
	}
	if err := check(call, vulkan.Result(r)); err != nil {
		return took, fmt.Errorf("%w (kernel %s, spec %v)", err, spec.Name, spec.Spec)
	}
	return took, nil
}

// noteBuild counts a built kernel and logs it (kmu held).
func (d *Device) noteBuild(k *Kernel, took time.Duration) {
	d.builds.Kernels++
	d.builds.Time += took
	if d.klog != nil {
		fmt.Fprintf(d.klog, "vk: built kernel %s spec %v subgroup %d in %v\n", k.spec.Name, k.spec.Spec, k.spec.SubgroupSize, took.Round(time.Microsecond))
	}
}

func (k *Kernel) destroy(d *Device) {
	vulkan.DestroyPipeline(d.dev, vulkan.Pipeline(unsafe.Pointer(k.pipeline)), nil)
	vulkan.DestroyShaderModule(d.dev, vulkan.ShaderModule(unsafe.Pointer(k.module)), nil)
}

// KernelBuilds is how many kernels the device has built and the time the
// driver took to compile them (vkCreateComputePipelines), summed over the
// kernels (Prepare's parallel builds overlap, so it may exceed the wall
// time): the first steps of a program pay for it, since every shape
// class, dtype and tile is its own pipeline, and on some drivers a large
// cooperative-matrix kernel takes seconds.
type KernelBuilds struct {
	Kernels int
	Time    time.Duration
}

// KernelBuilds reports the kernels built so far and their compile time.
func (d *Device) KernelBuilds() KernelBuilds {
	d.kmu.Lock()
	defer d.kmu.Unlock()
	return d.builds
}

func u32Bytes(w []uint32) []byte {
	if len(w) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&w[0])), 4*len(w))
}

// ShaderKernel returns the kernel of variant key of the embedded shader
// registry (package shaders), building it on first use; its binding count
// and push-constant size come from the registry. The device's cache is
// consulted before the module is read, so recording a dispatch of a built
// kernel costs one map lookup rather than a copy of its SPIR-V.
func (d *Device) ShaderKernel(key shaders.Key, spec ...uint32) (*Kernel, error) {
	return d.ShaderKernelSubgroup(key, 0, spec...)
}

// ShaderKernelSubgroup is ShaderKernel with a required subgroup size
// (VK_EXT_subgroup_size_control; 0 leaves it to the driver): for kernels
// whose workgroup size is a count of subgroups, on devices whose subgroup
// size varies.
func (d *Device) ShaderKernelSubgroup(key shaders.Key, subgroup uint32, spec ...uint32) (*Kernel, error) {
	if err := d.alive(); err != nil {
		return nil, err
	}
	if subgroup != 0 {
		c := d.info.Caps
		if !c.SubgroupSizeControl || subgroup < c.MinSubgroupSize || subgroup > c.MaxSubgroupSize {
			return nil, fmt.Errorf("vk: kernel %s: subgroup size %d needs subgroup size control within [%d, %d]: %w",
				key.Name(), subgroup, c.MinSubgroupSize, c.MaxSubgroupSize, ErrUnsupported)
		}
	}
	buffers, push, err := shaders.Layout(key)
	if err != nil {
		return nil, fmt.Errorf("vk: %w", err)
	}
	s := KernelSpec{Name: key.Name(), Buffers: buffers, PushSize: push, Spec: spec, SubgroupSize: subgroup}
	d.kmu.Lock()
	k, ok := d.kernels[kernelKey(s)]
	d.kmu.Unlock()
	if ok {
		return k, nil
	}
	sh, err := shaders.Lookup(key)
	if err != nil {
		return nil, fmt.Errorf("vk: %w", err)
	}
	s.SPIRV = sh.Words()
	return d.Kernel(s)
}

// PushBytes views a push-constant struct as the bytes Dispatch takes. T must
// be a struct of 4-byte scalars laid out like the shader's std430 block;
// guard its size beside its declaration.
func PushBytes[T any](p *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), unsafe.Sizeof(*p))
}

// KernelStat is one compile statistic of a kernel as its driver reports it
// (names are the driver's, e.g. a register count or spilled bytes), for
// one of the pipeline's executables.
type KernelStat struct {
	Executable, Name string
	Value            float64
}

// Statistics returns the driver's compile statistics of k. It needs a
// device opened with Options.KernelStatistics on a driver with
// VK_KHR_pipeline_executable_properties; elsewhere it returns
// ErrUnsupported.
func (k *Kernel) Statistics(d *Device) ([]KernelStat, error) {
	if err := d.alive(); err != nil {
		return nil, err
	}
	if err := k.wait(); err != nil {
		return nil, err
	}
	if !d.stats {
		return nil, fmt.Errorf("vk: kernel %s statistics: open the device with KernelStatistics on a driver with VK_KHR_pipeline_executable_properties: %w", k.spec.Name, ErrUnsupported)
	}
	var out [64]C.vkl_stat
	n := C.vkl_pipeline_stats(d.cdev(), k.pipeline, &out[0], C.uint32_t(len(out)))
	if n < 0 {
		return nil, check("vkGetPipelineExecutableStatisticsKHR", vulkan.Result(n))
	}
	stats := make([]KernelStat, int(n))
	for i := range stats {
		stats[i] = KernelStat{Executable: C.GoString(&out[i].executable[0]), Name: C.GoString(&out[i].name[0]), Value: float64(out[i].value)}
	}
	return stats, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Kernels returns the kernels the device has built so far, by name and
// specialization: for tools that report on what ran (lorabench -stats).
func (d *Device) Kernels() []*Kernel {
	d.kmu.Lock()
	ks := make([]*Kernel, 0, len(d.kernels))
	for _, k := range d.kernels {
		ks = append(ks, k)
	}
	d.kmu.Unlock()
	sort.Slice(ks, func(i, j int) bool { return kernelKey(ks[i].spec) < kernelKey(ks[j].spec) })
	return ks
}
