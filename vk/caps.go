package vk

// #include "shim.h"
import "C"

import (
	"fmt"
	"strings"
)

// DeviceType is Vulkan's physical device type.
type DeviceType int

const (
	DeviceOther DeviceType = iota
	DeviceIntegrated
	DeviceDiscrete
	DeviceVirtual
	DeviceCPU
)

func (t DeviceType) String() string {
	return [...]string{"other", "integrated", "discrete", "virtual", "cpu"}[t]
}

// ComponentType names a cooperative-matrix element type.
type ComponentType int32

const (
	ComponentF16  ComponentType = 0
	ComponentF32  ComponentType = 1
	ComponentF64  ComponentType = 2
	ComponentS8   ComponentType = 3
	ComponentS32  ComponentType = 5
	ComponentU8   ComponentType = 7
	ComponentU32  ComponentType = 9
	ComponentBF16 ComponentType = C.VKL_COMPONENT_BFLOAT16_KHR
)

func (c ComponentType) String() string {
	switch c {
	case ComponentF16:
		return "f16"
	case ComponentF32:
		return "f32"
	case ComponentF64:
		return "f64"
	case ComponentS8:
		return "s8"
	case ComponentS32:
		return "s32"
	case ComponentU8:
		return "u8"
	case ComponentU32:
		return "u32"
	case ComponentBF16:
		return "bf16"
	}
	return fmt.Sprintf("type%d", int32(c))
}

// CoopMatShape is one cooperative-matrix configuration the device supports:
// C[M,N] (+)= A[M,K]·B[K,N] at the given scope.
type CoopMatShape struct {
	M, N, K         uint32
	A, B, C, Result ComponentType
	Saturating      bool
	SubgroupScope   bool
}

func (s CoopMatShape) String() string {
	return fmt.Sprintf("%dx%dx%d %s·%s+%s→%s", s.M, s.N, s.K, s.A, s.B, s.C, s.Result)
}

// Caps is what a device can do, probed once through the Vulkan 1.1/1.2/1.3
// feature and property chains. Kernels consult it to pick variants; every
// optional feature it reports is enabled on the logical device.
type Caps struct {
	Float16, Int8, Int64      bool // shader arithmetic types
	Storage16, Storage8       bool // 16/8-bit storage buffer access
	PushConstant16            bool
	SubgroupSize              uint32 // default subgroup size
	MinSubgroupSize           uint32
	MaxSubgroupSize           uint32
	SubgroupSizeControl       bool
	ComputeFullSubgroups      bool
	SubgroupArithmetic        bool
	MaxSharedMemory           uint32 // bytes of shared memory per workgroup
	MaxWorkgroupInvocations   uint32
	MaxWorkgroupSize          [3]uint32
	MaxWorkgroupCount         [3]uint32
	MaxPushConstants          uint32
	MaxAllocationSize         uint64 // largest single VkDeviceMemory
	MaxStorageBufferRange     uint64 // largest storage-buffer binding
	MinStorageOffsetAlignment uint64
	TimestampPeriod           float32 // nanoseconds per tick
	TimestampValidBits        uint32  // 0: no timestamps on the compute queue
	CoopMat                   bool    // VK_KHR_cooperative_matrix
	CoopMatShapes             []CoopMatShape
	CoopMat2                  bool // VK_NV_cooperative_matrix2 (workgroup scope)
	CoopMat2Flexible          bool
	CoopMat2Shapes            []CoopMat2Shape // flexible-dimension configurations
	CoopMat2MaxWorkgroupSize  uint32          // invocations of a workgroup-scope kernel
	CoopMat2MaxDimension      uint32          // largest flexible M, N or K
	CoopMat2ReservedShared    uint32          // shared bytes the driver keeps for workgroup scope
	BFloat16                  bool            // VK_KHR_shader_bfloat16 type
	BFloat16CoopMat           bool
	PushDescriptor            bool // VK_KHR_push_descriptor (required)
	PipelineStatistics        bool // VK_KHR_pipeline_executable_properties (Kernel.Statistics)
	DeviceLocalBytes          uint64
	QueueFamily               uint32
}

// CoopMat2Shape is one flexible-dimension configuration of
// VK_NV_cooperative_matrix2: workgroup-scope matrices whose M, N and K are
// multiples of the granularities, in a workgroup of Invocations.
type CoopMat2Shape struct {
	MGranularity, NGranularity, KGranularity uint32
	A, B, C, Result                          ComponentType
	Saturating                               bool
	WorkgroupScope                           bool
	Invocations                              uint32
}

func (s CoopMat2Shape) String() string {
	return fmt.Sprintf("%dx%dx%d granularity %s·%s+%s→%s, %d invocations", s.MGranularity, s.NGranularity,
		s.KGranularity, s.A, s.B, s.C, s.Result, s.Invocations)
}

// Multiplies reports whether s is a workgroup-scope configuration with
// inputs of type in and accumulator and result of type acc.
func (s CoopMat2Shape) Multiplies(in, acc ComponentType) bool {
	return s.WorkgroupScope && !s.Saturating && s.A == in && s.B == in && s.C == acc && s.Result == acc
}

// Multiplies reports whether s is a subgroup-scope shape with inputs of
// type in and accumulator and result of type acc.
func (s CoopMatShape) Multiplies(in, acc ComponentType) bool {
	return s.SubgroupScope && s.A == in && s.B == in && s.C == acc && s.Result == acc
}

// HasCoopMat reports whether a subgroup-scope shape with the given input and
// accumulator types exists.
func (c *Caps) HasCoopMat(in, acc ComponentType) (CoopMatShape, bool) {
	for _, s := range c.CoopMatShapes {
		if s.Multiplies(in, acc) {
			return s, true
		}
	}
	return CoopMatShape{}, false
}

// DeviceInfo describes one physical device.
type DeviceInfo struct {
	Index      int
	Name       string
	Type       DeviceType
	VendorID   uint32
	DeviceID   uint32
	Driver     string
	DriverInfo string
	APIVersion string
	// DriverVersion is VkPhysicalDeviceProperties.driverVersion (encoded
	// the vendor's way) and PipelineCacheUUID its pipelineCacheUUID: with
	// VendorID and DeviceID they identify a device and driver build.
	DriverVersion     uint32
	PipelineCacheUUID [16]byte
	Caps              Caps
}

// Vendor names the PCI vendor.
func (d DeviceInfo) Vendor() string {
	switch d.VendorID {
	case 0x10de:
		return "NVIDIA"
	case 0x1002:
		return "AMD"
	case 0x8086:
		return "Intel"
	case 0x13b5:
		return "ARM"
	case 0x5143:
		return "Qualcomm"
	case 0x10005:
		return "Mesa"
	}
	return fmt.Sprintf("0x%04x", d.VendorID)
}

func (d DeviceInfo) String() string {
	return fmt.Sprintf("#%d %s (%s, %s, driver %s %s, Vulkan %s)", d.Index, d.Name, d.Vendor(), d.Type,
		d.Driver, d.DriverInfo, d.APIVersion)
}

func apiString(v uint32) string {
	return fmt.Sprintf("%d.%d.%d", v>>22, (v>>12)&0x3ff, v&0xfff)
}

func infoFromCaps(index int, c *C.vkl_caps) DeviceInfo {
	b := func(v C.uint32_t) bool { return v != 0 }
	caps := Caps{
		Float16: b(c.float16), Int8: b(c.int8), Int64: b(c.int64),
		Storage16: b(c.storage16), Storage8: b(c.storage8), PushConstant16: b(c.push_constant16),
		SubgroupSize: uint32(c.subgroup_size), MinSubgroupSize: uint32(c.min_subgroup_size),
		MaxSubgroupSize: uint32(c.max_subgroup_size), SubgroupSizeControl: b(c.subgroup_size_control),
		ComputeFullSubgroups: b(c.compute_full_subgroups), SubgroupArithmetic: b(c.subgroup_arith),
		MaxSharedMemory: uint32(c.max_shared_memory), MaxWorkgroupInvocations: uint32(c.max_invocations),
		MaxPushConstants: uint32(c.max_push_constants), MaxAllocationSize: uint64(c.max_alloc_size),
		MaxStorageBufferRange: uint64(c.max_storage_range), MinStorageOffsetAlignment: uint64(c.min_storage_offset_align),
		TimestampPeriod: float32(c.timestamp_period), TimestampValidBits: uint32(c.timestamp_valid_bits),
		CoopMat: b(c.coopmat), CoopMat2: b(c.coopmat2), CoopMat2Flexible: b(c.coopmat2_flexible),
		BFloat16: b(c.bf16), BFloat16CoopMat: b(c.bf16_coopmat), PushDescriptor: b(c.push_descriptor), PipelineStatistics: b(c.pipeline_stats),
		DeviceLocalBytes: uint64(c.device_local_bytes), QueueFamily: uint32(c.compute_queue_family),
	}
	for i := 0; i < 3; i++ {
		caps.MaxWorkgroupSize[i] = uint32(c.max_group_size[i])
		caps.MaxWorkgroupCount[i] = uint32(c.max_group_count[i])
	}
	if caps.MaxAllocationSize == 0 { // Vulkan 1.0 drivers: assume the storage range
		caps.MaxAllocationSize = caps.MaxStorageBufferRange
	}
	for i := 0; i < int(c.n_coopmat); i++ {
		s := c.coopmat_shapes[i]
		caps.CoopMatShapes = append(caps.CoopMatShapes, CoopMatShape{
			M: uint32(s.MSize), N: uint32(s.NSize), K: uint32(s.KSize),
			A: ComponentType(s.AType), B: ComponentType(s.BType), C: ComponentType(s.CType),
			Result: ComponentType(s.ResultType), Saturating: s.saturatingAccumulation != 0,
			SubgroupScope: s.scope == 3,
		})
	}
	caps.CoopMat2MaxWorkgroupSize = uint32(c.cm2_max_workgroup)
	caps.CoopMat2MaxDimension = uint32(c.cm2_max_dimension)
	caps.CoopMat2ReservedShared = uint32(c.cm2_reserved_shared)
	for i := 0; i < int(c.n_coopmat_flex); i++ {
		s := c.coopmat_flex[i]
		caps.CoopMat2Shapes = append(caps.CoopMat2Shapes, CoopMat2Shape{
			MGranularity: uint32(s.MGranularity), NGranularity: uint32(s.NGranularity), KGranularity: uint32(s.KGranularity),
			A: ComponentType(s.AType), B: ComponentType(s.BType), C: ComponentType(s.CType),
			Result: ComponentType(s.ResultType), Saturating: s.saturatingAccumulation != 0,
			WorkgroupScope: s.scope == 2, Invocations: uint32(s.workgroupInvocations),
		})
	}
	info := DeviceInfo{
		Index: index, Name: C.GoString(&c.name[0]), Type: DeviceType(c.device_type),
		VendorID: uint32(c.vendor_id), DeviceID: uint32(c.device_id),
		Driver: C.GoString(&c.driver_name[0]), DriverInfo: C.GoString(&c.driver_info[0]),
		APIVersion: apiString(uint32(c.api_version)), DriverVersion: uint32(c.driver_version), Caps: caps,
	}
	for i := range info.PipelineCacheUUID {
		info.PipelineCacheUUID[i] = byte(c.pipeline_cache_uuid[i])
	}
	return info
}

// Describe returns a multi-line summary of the capabilities for people.
func (c *Caps) Describe() string {
	var sb strings.Builder
	yn := func(v bool) string {
		if v {
			return "yes"
		}
		return "no"
	}
	fmt.Fprintf(&sb, "fp16 arithmetic %s, int8 %s, int64 %s, 16-bit storage %s, 8-bit storage %s\n",
		yn(c.Float16), yn(c.Int8), yn(c.Int64), yn(c.Storage16), yn(c.Storage8))
	fmt.Fprintf(&sb, "subgroup %d (min %d, max %d, size control %s, arithmetic %s)\n",
		c.SubgroupSize, c.MinSubgroupSize, c.MaxSubgroupSize, yn(c.SubgroupSizeControl), yn(c.SubgroupArithmetic))
	fmt.Fprintf(&sb, "shared memory %d KiB, workgroup ≤ %d invocations %v, count %v\n",
		c.MaxSharedMemory/1024, c.MaxWorkgroupInvocations, c.MaxWorkgroupSize, c.MaxWorkgroupCount)
	fmt.Fprintf(&sb, "max allocation %s, max storage range %s, device-local memory %s, push constants %d B\n",
		humanBytes(c.MaxAllocationSize), humanBytes(c.MaxStorageBufferRange), humanBytes(c.DeviceLocalBytes), c.MaxPushConstants)
	fmt.Fprintf(&sb, "timestamps %s (%d valid bits, %.3g ns/tick), push descriptors %s\n",
		yn(c.TimestampValidBits > 0), c.TimestampValidBits, c.TimestampPeriod, yn(c.PushDescriptor))
	fmt.Fprintf(&sb, "VK_KHR_cooperative_matrix %s, VK_NV_cooperative_matrix2 %s (flexible %s), VK_KHR_shader_bfloat16 %s (coopmat %s)\n",
		yn(c.CoopMat), yn(c.CoopMat2), yn(c.CoopMat2Flexible), yn(c.BFloat16), yn(c.BFloat16CoopMat))
	for _, s := range c.CoopMatShapes {
		if s.SubgroupScope {
			fmt.Fprintf(&sb, "  coopmat %s\n", s)
		}
	}
	if c.CoopMat2 {
		fmt.Fprintf(&sb, "  coopmat2 workgroup ≤ %d invocations, dimensions ≤ %d, %d B shared reserved\n",
			c.CoopMat2MaxWorkgroupSize, c.CoopMat2MaxDimension, c.CoopMat2ReservedShared)
	}
	for _, s := range c.CoopMat2Shapes {
		fmt.Fprintf(&sb, "  coopmat2 %s\n", s)
	}
	return sb.String()
}

func humanBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
