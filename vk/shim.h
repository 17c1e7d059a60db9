// shim.h declares the small C layer of package vk. It is compiled against the
// system's Vulkan headers (Debian 12 ships 1.3.239) for the structure chains
// that vulkan-go's 1.1 headers lack: Vulkan 1.1/1.2/1.3 feature structs,
// subgroup size control, cooperative matrices and bf16. Extension structs newer
// than the system headers are declared below with their registry values.
#ifndef VKLORA_SHIM_H
#define VKLORA_SHIM_H

#define VK_NO_PROTOTYPES 1
#include <vulkan/vulkan.h>
#include <stdint.h>

// ---- Extension definitions missing from older system headers ----
#define VKL_STYPE_COOPMAT_FEATURES_KHR 1000506000
#define VKL_STYPE_COOPMAT_PROPERTIES_KHR 1000506001
#define VKL_STYPE_COOPMAT2_FEATURES_NV 1000593000
#define VKL_STYPE_COOPMAT_FLEX_PROPERTIES_NV 1000593001
#define VKL_STYPE_COOPMAT2_PROPERTIES_NV 1000593002
#define VKL_STYPE_BFLOAT16_FEATURES_KHR 1000141000
#define VKL_COMPONENT_BFLOAT16_KHR 1000141000

typedef struct {
	VkStructureType sType;
	void *pNext;
	VkBool32 cooperativeMatrix;
	VkBool32 cooperativeMatrixRobustBufferAccess;
} vkl_coopmat_features;

typedef struct {
	VkStructureType sType;
	void *pNext;
	uint32_t MSize, NSize, KSize;
	int32_t AType, BType, CType, ResultType;
	VkBool32 saturatingAccumulation;
	int32_t scope;
} vkl_coopmat_props;

typedef struct {
	VkStructureType sType;
	void *pNext;
	VkBool32 workgroupScope, flexibleDimensions, reductions, conversions, perElementOperations,
	    tensorAddressing, blockLoads;
} vkl_coopmat2_features;

typedef struct {
	VkStructureType sType;
	void *pNext;
	uint32_t MGranularity, NGranularity, KGranularity;
	int32_t AType, BType, CType, ResultType;
	VkBool32 saturatingAccumulation;
	int32_t scope;
	uint32_t workgroupInvocations;
} vkl_coopmat_flex_props;

typedef struct {
	VkStructureType sType;
	void *pNext;
	uint32_t workgroupScopeMaxWorkgroupSize, flexibleDimensionsMaxDimension, workgroupScopeReservedSharedMemory;
} vkl_coopmat2_props;

typedef struct {
	VkStructureType sType;
	void *pNext;
	VkBool32 shaderBFloat16Type, shaderBFloat16DotProduct, shaderBFloat16CooperativeMatrix;
} vkl_bf16_features;

// ---- What the probe reports ----
#define VKL_MAX_COOPMAT 64
#define VKL_NAME 256

typedef struct {
	// properties
	char name[VKL_NAME];
	char driver_name[VKL_NAME];
	char driver_info[VKL_NAME];
	uint32_t api_version, driver_version, vendor_id, device_id, device_type;
	uint8_t pipeline_cache_uuid[VK_UUID_SIZE];
	uint32_t subgroup_size, min_subgroup_size, max_subgroup_size;
	uint32_t max_shared_memory, max_invocations;
	uint32_t max_group_size[3], max_group_count[3];
	uint32_t max_push_constants, max_bound_descriptor_sets;
	uint64_t max_alloc_size, max_storage_range, min_storage_offset_align;
	uint64_t non_coherent_atom;
	float timestamp_period;
	uint32_t timestamp_compute_and_graphics;
	uint32_t compute_queue_family, timestamp_valid_bits;
	uint64_t device_local_bytes;
	// features (1 = supported)
	uint32_t float16, int8, int64, storage16, storage8, push_constant16;
	uint32_t subgroup_size_control, compute_full_subgroups, subgroup_arith;
	uint32_t coopmat, coopmat2, coopmat2_flexible, bf16, bf16_coopmat;
	uint32_t push_descriptor, memory_budget, pipeline_stats;
	uint32_t n_coopmat;
	vkl_coopmat_props coopmat_shapes[VKL_MAX_COOPMAT];
	// VK_NV_cooperative_matrix2: limits and flexible-dimension shapes
	uint32_t cm2_max_workgroup, cm2_max_dimension, cm2_reserved_shared;
	uint32_t n_coopmat_flex;
	vkl_coopmat_flex_props coopmat_flex[VKL_MAX_COOPMAT];
} vkl_caps;

// ---- Loader ----
int vkl_load(char *err, int errlen);
void *vkl_get_instance_proc_addr(void);

// ---- Instance ----
VkResult vkl_create_instance(int validation, VkInstance *out, VkDebugUtilsMessengerEXT *messenger,
			      int *validation_enabled);
void vkl_destroy_instance(VkInstance inst, VkDebugUtilsMessengerEXT messenger);
VkResult vkl_enumerate_physical(VkInstance inst, uint32_t *count, VkPhysicalDevice *out);
void vkl_probe(VkInstance inst, VkPhysicalDevice phys, vkl_caps *caps);

// ---- Device ----
// want_* choose which optional features to enable; each must be reported by the probe.
VkResult vkl_create_device(VkInstance inst, VkPhysicalDevice phys, const vkl_caps *caps, VkDevice *out);

// ---- Pipelines ----
VkResult vkl_create_layout(VkDevice dev, uint32_t bindings, uint32_t push_size, VkDescriptorSetLayout *set_layout,
			   VkPipelineLayout *layout);
// capture asks the driver to keep the pipeline's statistics (registers,
// spills, ...; VK_KHR_pipeline_executable_properties, enabled by
// vkl_create_device when caps->pipeline_stats). fail_module and
// fail_pipeline, when not VK_SUCCESS, are returned instead of calling
// vkCreateShaderModule or vkCreateComputePipelines (the fault-injection
// test hook, fault.go). *stage says which call failed: 1 the shader
// module, 2 the pipeline.
VkResult vkl_create_pipeline(VkDevice dev, VkPipelineCache cache, VkPipelineLayout layout, const uint32_t *code,
			     size_t code_bytes, const uint32_t *spec, uint32_t nspec, uint32_t required_subgroup,
			     int capture, VkResult fail_module, VkResult fail_pipeline, VkPipeline *pipeline,
			     VkShaderModule *module, int *stage);

// One statistic of one executable of a pipeline, as a double.
#define VKL_STAT_NAME 64
typedef struct {
	char executable[VKL_STAT_NAME];
	char name[VKL_STAT_NAME];
	double value;
} vkl_stat;

// vkl_pipeline_stats fills at most max statistics of every executable of
// pipe and returns how many, or a negative VkResult.
int vkl_pipeline_stats(VkDevice dev, VkPipeline pipe, vkl_stat *out, uint32_t max);

// ---- Recording: one cgo call per dispatch ----
typedef struct {
	VkBuffer buffer;
	VkDeviceSize offset, size;
} vkl_binding;

void vkl_cmd_dispatch(VkDevice dev, VkCommandBuffer cb, VkPipeline pipe, VkPipelineLayout layout,
		      const vkl_binding *bindings, uint32_t nbind, const void *push, uint32_t push_size, uint32_t gx,
		      uint32_t gy, uint32_t gz);

// ---- Per-step calls (vk/doc.go says why these bypass vulkan-go) ----
VkResult vkl_create_buffer(VkDevice dev, VkDeviceSize size, VkBufferUsageFlags usage, VkBuffer *buf,
			   VkDeviceSize *req_size, uint32_t *req_bits);
// vkl_allocate_bind allocates memory and binds buf to it; *bound is 1 when
// the allocation succeeded and the bind failed (*mem is then to be freed).
VkResult vkl_allocate_bind(VkDevice dev, VkBuffer buf, VkDeviceSize size, uint32_t type, VkDeviceMemory *mem,
			   int *bound);
VkResult vkl_new_submission(VkDevice dev, uint32_t family, VkCommandPool *pool, VkCommandBuffer *cb, VkFence *fence);
VkResult vkl_create_query_pool(VkDevice dev, uint32_t count, VkQueryPool *qp);
VkResult vkl_begin(VkCommandBuffer cb);
VkResult vkl_submit(VkQueue queue, VkCommandBuffer cb, VkFence fence);
VkResult vkl_wait_reset(VkDevice dev, VkFence fence);
void vkl_cmd_barrier(VkCommandBuffer cb);
VkResult vkl_map(VkDevice dev, VkDeviceMemory mem, VkDeviceSize size, void **p);
// ---- Once per device, also without vulkan-go: its wrappers of these leaked
// their C copies of the structs (about 2.7 KB per Open) ----
VkResult vkl_create_pipeline_cache(VkDevice dev, const void *data, size_t size, VkPipelineCache *cache);
VkResult vkl_pipeline_cache_data(VkDevice dev, VkPipelineCache cache, void **data, size_t *size);
// vkl_memory_types writes the property flags of each memory type and
// returns their count.
uint32_t vkl_memory_types(VkPhysicalDevice phys, uint32_t flags[VK_MAX_MEMORY_TYPES]);
void vkl_destroy_buffer(VkDevice dev, VkBuffer buf, VkDeviceMemory mem, int mapped);
void vkl_cmd_copy(VkCommandBuffer cb, VkBuffer src, VkBuffer dst, VkDeviceSize src_off, VkDeviceSize dst_off,
		  VkDeviceSize size);

// ---- Validation messages (collected by the debug messenger) ----
void vkl_clear_messages(void);
// vkl_take_messages moves at most max collected messages into out (the
// caller frees each) and clears the list in the same critical section, so
// that a message arriving meanwhile is neither lost nor counted twice;
// *more is how many were dropped.
int vkl_take_messages(char **out, int max, int *more);

#endif
