// shim_device.c: capability probe, device creation, pipelines and the
// one-call dispatch of package vk.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"

// Defined in shim.c.
extern PFN_vkVoidFunction vkl_proc(VkInstance inst, const char *name);

static int ext_in(const VkExtensionProperties *exts, uint32_t n, const char *name) {
	for (uint32_t i = 0; i < n; i++)
		if (!strcmp(exts[i].extensionName, name)) return 1;
	return 0;
}

typedef struct {
	VkExtensionProperties *exts;
	uint32_t n;
} ext_list;

static ext_list device_exts(VkInstance inst, VkPhysicalDevice phys) {
	PFN_vkEnumerateDeviceExtensionProperties f =
	    (PFN_vkEnumerateDeviceExtensionProperties)vkl_proc(inst, "vkEnumerateDeviceExtensionProperties");
	ext_list l = {0};
	if (f(phys, NULL, &l.n, NULL) != VK_SUCCESS) return l;
	l.exts = calloc(l.n ? l.n : 1, sizeof *l.exts);
	if (f(phys, NULL, &l.n, l.exts) != VK_SUCCESS) l.n = 0;
	return l;
}

// The feature chain used both for probing and (with unsupported bits
// cleared) for device creation, so the two can never disagree.
typedef struct {
	VkPhysicalDeviceFeatures2 f2;
	VkPhysicalDeviceVulkan11Features v11;
	VkPhysicalDeviceVulkan12Features v12;
	VkPhysicalDeviceVulkan13Features v13;
	vkl_coopmat_features cm;
	vkl_coopmat2_features cm2;
	vkl_bf16_features bf;
	VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR pe;
} feature_chain;

static void chain_features(feature_chain *c, uint32_t api, int coopmat, int coopmat2, int bf16, int stats) {
	memset(c, 0, sizeof *c);
	c->f2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
	c->v11.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES;
	c->v12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES;
	c->v13.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES;
	c->cm.sType = VKL_STYPE_COOPMAT_FEATURES_KHR;
	c->cm2.sType = VKL_STYPE_COOPMAT2_FEATURES_NV;
	c->bf.sType = VKL_STYPE_BFLOAT16_FEATURES_KHR;
	c->pe.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR;
	void **next = &c->f2.pNext;
	*next = &c->v11;
	next = &c->v11.pNext;
	*next = &c->v12;
	next = &c->v12.pNext;
	if (api >= VK_API_VERSION_1_3) {
		*next = &c->v13;
		next = &c->v13.pNext;
	}
	if (coopmat) {
		*next = &c->cm;
		next = &c->cm.pNext;
	}
	if (coopmat2) {
		*next = &c->cm2;
		next = &c->cm2.pNext;
	}
	if (bf16) {
		*next = &c->bf;
		next = &c->bf.pNext;
	}
	if (stats) {
		*next = &c->pe;
		next = &c->pe.pNext;
	}
}

// query_props runs a two-call property enumerator (count, then fill) whose
// elements are size-byte structs starting with sType and pNext, and copies
// at most max of them into out. It returns how many it copied: 0 when the
// entry point is missing or fails.
static uint32_t query_props(VkInstance inst, VkPhysicalDevice phys, const char *fn, VkStructureType stype,
			    size_t size, uint32_t max, void *out) {
	typedef VkResult(VKAPI_PTR * pfn)(VkPhysicalDevice, uint32_t *, void *);
	pfn f = (pfn)vkl_proc(inst, fn);
	uint32_t n = 0;
	if (!f || f(phys, &n, NULL) != VK_SUCCESS || n == 0) return 0;
	char *props = calloc(n, size); // pNext stays NULL
	if (!props) return 0;
	for (uint32_t i = 0; i < n; i++) memcpy(props + i * size, &stype, sizeof stype);
	uint32_t got = 0;
	if (f(phys, &n, props) == VK_SUCCESS) {
		got = n < max ? n : max;
		memcpy(out, props, got * size);
	}
	free(props);
	return got;
}

void vkl_probe(VkInstance inst, VkPhysicalDevice phys, vkl_caps *caps) {
	memset(caps, 0, sizeof *caps);
	ext_list el = device_exts(inst, phys);
	int has_cm = ext_in(el.exts, el.n, "VK_KHR_cooperative_matrix");
	int has_cm2 = ext_in(el.exts, el.n, "VK_NV_cooperative_matrix2");
	int has_bf = ext_in(el.exts, el.n, "VK_KHR_shader_bfloat16");
	caps->push_descriptor = ext_in(el.exts, el.n, VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME);
	caps->memory_budget = ext_in(el.exts, el.n, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
	caps->pipeline_stats = ext_in(el.exts, el.n, VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME);
	free(el.exts);

	VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
	VkPhysicalDeviceVulkan11Properties p11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_PROPERTIES};
	VkPhysicalDeviceVulkan12Properties p12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_PROPERTIES};
	VkPhysicalDeviceSubgroupSizeControlProperties psc = {
	    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES};
	VkPhysicalDeviceMaintenance3Properties pm3 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
	p2.pNext = &p11;
	p11.pNext = &p12;
	p12.pNext = &pm3;
	pm3.pNext = &psc;
	((PFN_vkGetPhysicalDeviceProperties2)vkl_proc(inst, "vkGetPhysicalDeviceProperties2"))(phys, &p2);
	VkPhysicalDeviceProperties *p = &p2.properties;
	snprintf(caps->name, VKL_NAME, "%s", p->deviceName);
	snprintf(caps->driver_name, VKL_NAME, "%s", p12.driverName);
	snprintf(caps->driver_info, VKL_NAME, "%s", p12.driverInfo);
	caps->api_version = p->apiVersion;
	caps->driver_version = p->driverVersion;
	caps->vendor_id = p->vendorID;
	caps->device_id = p->deviceID;
	caps->device_type = p->deviceType;
	memcpy(caps->pipeline_cache_uuid, p->pipelineCacheUUID, VK_UUID_SIZE);
	caps->subgroup_size = p11.subgroupSize;
	caps->subgroup_arith = (p11.subgroupSupportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) &&
			       (p11.subgroupSupportedStages & VK_SHADER_STAGE_COMPUTE_BIT);
	caps->min_subgroup_size = p11.subgroupSize;
	caps->max_subgroup_size = p11.subgroupSize;
	caps->max_shared_memory = p->limits.maxComputeSharedMemorySize;
	caps->max_invocations = p->limits.maxComputeWorkGroupInvocations;
	for (int i = 0; i < 3; i++) {
		caps->max_group_size[i] = p->limits.maxComputeWorkGroupSize[i];
		caps->max_group_count[i] = p->limits.maxComputeWorkGroupCount[i];
	}
	caps->max_push_constants = p->limits.maxPushConstantsSize;
	caps->max_bound_descriptor_sets = p->limits.maxBoundDescriptorSets;
	caps->max_alloc_size = pm3.maxMemoryAllocationSize;
	caps->max_storage_range = p->limits.maxStorageBufferRange;
	caps->min_storage_offset_align = p->limits.minStorageBufferOffsetAlignment;
	caps->non_coherent_atom = p->limits.nonCoherentAtomSize;
	caps->timestamp_period = p->limits.timestampPeriod;
	caps->timestamp_compute_and_graphics = p->limits.timestampComputeAndGraphics;

	feature_chain c;
	chain_features(&c, p->apiVersion, has_cm, has_cm2, has_bf, 0);
	((PFN_vkGetPhysicalDeviceFeatures2)vkl_proc(inst, "vkGetPhysicalDeviceFeatures2"))(phys, &c.f2);
	caps->int64 = c.f2.features.shaderInt64;
	caps->storage16 = c.v11.storageBuffer16BitAccess;
	caps->push_constant16 = c.v11.storagePushConstant16;
	caps->float16 = c.v12.shaderFloat16;
	caps->int8 = c.v12.shaderInt8;
	caps->storage8 = c.v12.storageBuffer8BitAccess;
	if (p->apiVersion >= VK_API_VERSION_1_3) {
		caps->subgroup_size_control = c.v13.subgroupSizeControl;
		caps->compute_full_subgroups = c.v13.computeFullSubgroups;
		if (caps->subgroup_size_control) {
			caps->min_subgroup_size = psc.minSubgroupSize;
			caps->max_subgroup_size = psc.maxSubgroupSize;
		}
	}
	caps->coopmat = has_cm && c.cm.cooperativeMatrix;
	// The workgroup-scope matmul names its tiles through tensor layouts.
	caps->coopmat2 = has_cm2 && c.cm2.workgroupScope && c.cm2.tensorAddressing;
	caps->coopmat2_flexible = has_cm2 && c.cm2.flexibleDimensions;
	caps->bf16 = has_bf && c.bf.shaderBFloat16Type;
	caps->bf16_coopmat = has_bf && c.bf.shaderBFloat16CooperativeMatrix;

	if (caps->coopmat) {
		caps->n_coopmat = query_props(inst, phys, "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR",
					      VKL_STYPE_COOPMAT_PROPERTIES_KHR, sizeof(vkl_coopmat_props),
					      VKL_MAX_COOPMAT, caps->coopmat_shapes);
	}

	if (caps->coopmat2) {
		vkl_coopmat2_props cp = {.sType = VKL_STYPE_COOPMAT2_PROPERTIES_NV};
		VkPhysicalDeviceProperties2 q2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &cp};
		((PFN_vkGetPhysicalDeviceProperties2)vkl_proc(inst, "vkGetPhysicalDeviceProperties2"))(phys, &q2);
		caps->cm2_max_workgroup = cp.workgroupScopeMaxWorkgroupSize;
		caps->cm2_max_dimension = cp.flexibleDimensionsMaxDimension;
		caps->cm2_reserved_shared = cp.workgroupScopeReservedSharedMemory;
	}
	if (caps->coopmat2_flexible) {
		caps->n_coopmat_flex = query_props(inst, phys,
						   "vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV",
						   VKL_STYPE_COOPMAT_FLEX_PROPERTIES_NV, sizeof(vkl_coopmat_flex_props),
						   VKL_MAX_COOPMAT, caps->coopmat_flex);
	}

	// Queue: the first family with compute; prefer one with timestamps.
	PFN_vkGetPhysicalDeviceQueueFamilyProperties qf =
	    (PFN_vkGetPhysicalDeviceQueueFamilyProperties)vkl_proc(inst, "vkGetPhysicalDeviceQueueFamilyProperties");
	uint32_t nq = 0;
	qf(phys, &nq, NULL);
	VkQueueFamilyProperties *qs = calloc(nq ? nq : 1, sizeof *qs);
	qf(phys, &nq, qs);
	caps->compute_queue_family = UINT32_MAX;
	for (uint32_t i = 0; i < nq; i++) {
		if (!(qs[i].queueFlags & VK_QUEUE_COMPUTE_BIT)) continue;
		if (caps->compute_queue_family == UINT32_MAX ||
		    (caps->timestamp_valid_bits == 0 && qs[i].timestampValidBits > 0)) {
			caps->compute_queue_family = i;
			caps->timestamp_valid_bits = qs[i].timestampValidBits;
		}
	}
	free(qs);

	VkPhysicalDeviceMemoryProperties mp;
	((PFN_vkGetPhysicalDeviceMemoryProperties)vkl_proc(inst, "vkGetPhysicalDeviceMemoryProperties"))(phys, &mp);
	for (uint32_t i = 0; i < mp.memoryHeapCount; i++)
		if (mp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) caps->device_local_bytes += mp.memoryHeaps[i].size;
}

VkResult vkl_create_device(VkInstance inst, VkPhysicalDevice phys, const vkl_caps *caps, VkDevice *out) {
	const char *exts[8];
	uint32_t n = 0;
	if (caps->push_descriptor) exts[n++] = VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME;
	if (caps->coopmat) exts[n++] = "VK_KHR_cooperative_matrix";
	if (caps->coopmat2) exts[n++] = "VK_NV_cooperative_matrix2";
	if (caps->bf16) exts[n++] = "VK_KHR_shader_bfloat16";
	if (caps->memory_budget) exts[n++] = VK_EXT_MEMORY_BUDGET_EXTENSION_NAME;
	if (caps->pipeline_stats) exts[n++] = VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME;

	// Probe again and enable exactly what is both supported and wanted.
	feature_chain c;
	chain_features(&c, caps->api_version, caps->coopmat, caps->coopmat2, caps->bf16, caps->pipeline_stats);
	((PFN_vkGetPhysicalDeviceFeatures2)vkl_proc(inst, "vkGetPhysicalDeviceFeatures2"))(phys, &c.f2);
	VkPhysicalDeviceFeatures keep = {0};
	keep.shaderInt64 = c.f2.features.shaderInt64;
	keep.shaderInt16 = c.f2.features.shaderInt16;
	c.f2.features = keep;
	// Vulkan 1.1/1.2/1.3 structs: keep only what the engine uses; the rest may
	// carry costs (robustness, descriptor indexing) it never needs.
	VkPhysicalDeviceVulkan11Features v11 = {.sType = c.v11.sType, .pNext = c.v11.pNext};
	v11.storageBuffer16BitAccess = c.v11.storageBuffer16BitAccess;
	v11.uniformAndStorageBuffer16BitAccess = c.v11.uniformAndStorageBuffer16BitAccess;
	v11.storagePushConstant16 = c.v11.storagePushConstant16;
	c.v11 = v11;
	VkPhysicalDeviceVulkan12Features v12 = {.sType = c.v12.sType, .pNext = c.v12.pNext};
	v12.shaderFloat16 = c.v12.shaderFloat16;
	v12.shaderInt8 = c.v12.shaderInt8;
	v12.storageBuffer8BitAccess = c.v12.storageBuffer8BitAccess;
	v12.uniformAndStorageBuffer8BitAccess = c.v12.uniformAndStorageBuffer8BitAccess;
	v12.vulkanMemoryModel = c.v12.vulkanMemoryModel;
	v12.vulkanMemoryModelDeviceScope = c.v12.vulkanMemoryModelDeviceScope;
	v12.shaderSubgroupExtendedTypes = c.v12.shaderSubgroupExtendedTypes;
	c.v12 = v12;
	if (caps->api_version >= VK_API_VERSION_1_3) {
		VkPhysicalDeviceVulkan13Features v13 = {.sType = c.v13.sType, .pNext = c.v13.pNext};
		v13.subgroupSizeControl = c.v13.subgroupSizeControl;
		v13.computeFullSubgroups = c.v13.computeFullSubgroups;
		v13.maintenance4 = c.v13.maintenance4;
		c.v13 = v13;
	}
	c.cm.cooperativeMatrixRobustBufferAccess = VK_FALSE;

	float prio = 1.0f;
	VkDeviceQueueCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
				      .queueFamilyIndex = caps->compute_queue_family,
				      .queueCount = 1,
				      .pQueuePriorities = &prio};
	VkDeviceCreateInfo di = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
				 .pNext = &c.f2,
				 .queueCreateInfoCount = 1,
				 .pQueueCreateInfos = &qi,
				 .enabledExtensionCount = n,
				 .ppEnabledExtensionNames = exts};
	return ((PFN_vkCreateDevice)vkl_proc(inst, "vkCreateDevice"))(phys, &di, NULL, out);
}
