// shim.c: the C side of package vk. See shim.h for why it exists.
#include "shim.h"

#include <dlfcn.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static PFN_vkGetInstanceProcAddr gipa;

// Instance-level entry points, loaded once per instance. The engine keeps one
// instance per process, so globals are enough.
static PFN_vkCreateInstance p_CreateInstance;
static PFN_vkEnumerateInstanceLayerProperties p_EnumerateInstanceLayerProperties;
static PFN_vkEnumerateInstanceExtensionProperties p_EnumerateInstanceExtensionProperties;
static PFN_vkEnumerateInstanceVersion p_EnumerateInstanceVersion;
static PFN_vkDestroyInstance p_DestroyInstance;
static PFN_vkEnumeratePhysicalDevices p_EnumeratePhysicalDevices;
static PFN_vkGetPhysicalDeviceProperties2 p_GetPhysicalDeviceProperties2;
static PFN_vkGetPhysicalDeviceFeatures2 p_GetPhysicalDeviceFeatures2;
static PFN_vkGetPhysicalDeviceQueueFamilyProperties p_GetPhysicalDeviceQueueFamilyProperties;
static PFN_vkGetPhysicalDeviceMemoryProperties p_GetPhysicalDeviceMemoryProperties;
static PFN_vkEnumerateDeviceExtensionProperties p_EnumerateDeviceExtensionProperties;
static PFN_vkCreateDevice p_CreateDevice;
static PFN_vkCreateDebugUtilsMessengerEXT p_CreateDebugUtilsMessengerEXT;
static PFN_vkDestroyDebugUtilsMessengerEXT p_DestroyDebugUtilsMessengerEXT;
typedef VkResult(VKAPI_PTR *pfn_coopmat_props)(VkPhysicalDevice, uint32_t *, vkl_coopmat_props *);
static pfn_coopmat_props p_GetCoopMatProps;
// Device-level entry points reached through the loader's trampolines.
static PFN_vkCreateDescriptorSetLayout p_CreateDescriptorSetLayout;
static PFN_vkCreatePipelineLayout p_CreatePipelineLayout;
static PFN_vkDestroyDescriptorSetLayout p_DestroyDescriptorSetLayout;
static PFN_vkCreateShaderModule p_CreateShaderModule;
static PFN_vkDestroyShaderModule p_DestroyShaderModule;
static PFN_vkCreateComputePipelines p_CreateComputePipelines;
// The calls below replace vulkan-go wrappers that leaked their C
// allocations or packed Go pointers into C memory (vk/doc.go).
static PFN_vkCreateBuffer p_CreateBuffer;
static PFN_vkGetBufferMemoryRequirements p_GetBufferMemoryRequirements;
static PFN_vkAllocateMemory p_AllocateMemory;
static PFN_vkBindBufferMemory p_BindBufferMemory;
static PFN_vkBeginCommandBuffer p_BeginCommandBuffer;
static PFN_vkQueueSubmit p_QueueSubmit;
static PFN_vkWaitForFences p_WaitForFences;
static PFN_vkResetFences p_ResetFences;
static PFN_vkCreateCommandPool p_CreateCommandPool;
static PFN_vkAllocateCommandBuffers p_AllocateCommandBuffers;
static PFN_vkCreateFence p_CreateFence;
static PFN_vkCreateQueryPool p_CreateQueryPool;
static PFN_vkCmdPipelineBarrier p_CmdPipelineBarrier;
static PFN_vkCmdCopyBuffer p_CmdCopyBuffer;
static PFN_vkDestroyCommandPool p_DestroyCommandPool;
static PFN_vkMapMemory p_MapMemory;
static PFN_vkUnmapMemory p_UnmapMemory;
static PFN_vkDestroyBuffer p_DestroyBuffer;
static PFN_vkCreatePipelineCache p_CreatePipelineCache;
static PFN_vkGetPipelineCacheData p_GetPipelineCacheData;
static PFN_vkFreeMemory p_FreeMemory;
static PFN_vkGetPipelineExecutablePropertiesKHR p_GetPipelineExecutablePropertiesKHR;
static PFN_vkGetPipelineExecutableStatisticsKHR p_GetPipelineExecutableStatisticsKHR;
static PFN_vkCmdBindPipeline p_CmdBindPipeline;
static PFN_vkCmdPushConstants p_CmdPushConstants;
static PFN_vkCmdDispatch p_CmdDispatch;
static PFN_vkCmdPushDescriptorSetKHR p_CmdPushDescriptorSetKHR;

int vkl_load(char *err, int errlen) {
	if (gipa) return 0;
	// The runtime package ships only libvulkan.so.1; the -dev package adds libvulkan.so.
	const char *names[] = {"libvulkan.so.1", "libvulkan.so"};
	void *lib = NULL;
	for (int i = 0; i < 2 && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		snprintf(err, errlen, "dlopen libvulkan.so.1: %s", dlerror());
		return -1;
	}
	gipa = (PFN_vkGetInstanceProcAddr)dlsym(lib, "vkGetInstanceProcAddr");
	if (!gipa) {
		snprintf(err, errlen, "dlsym vkGetInstanceProcAddr: %s", dlerror());
		return -1;
	}
	p_CreateInstance = (PFN_vkCreateInstance)gipa(NULL, "vkCreateInstance");
	p_EnumerateInstanceLayerProperties =
	    (PFN_vkEnumerateInstanceLayerProperties)gipa(NULL, "vkEnumerateInstanceLayerProperties");
	p_EnumerateInstanceExtensionProperties =
	    (PFN_vkEnumerateInstanceExtensionProperties)gipa(NULL, "vkEnumerateInstanceExtensionProperties");
	p_EnumerateInstanceVersion = (PFN_vkEnumerateInstanceVersion)gipa(NULL, "vkEnumerateInstanceVersion");
	if (!p_CreateInstance) {
		snprintf(err, errlen, "vkGetInstanceProcAddr(vkCreateInstance) returned NULL");
		return -1;
	}
	return 0;
}

void *vkl_get_instance_proc_addr(void) { return (void *)gipa; }

// ---- Validation messages ----
#define VKL_MAX_MSG 64
static pthread_mutex_t msg_mu = PTHREAD_MUTEX_INITIALIZER;
static char *msgs[VKL_MAX_MSG];
static int nmsg, dropped;

static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
						  VkDebugUtilsMessageTypeFlagsEXT types,
						  const VkDebugUtilsMessengerCallbackDataEXT *data, void *user) {
	(void)types;
	(void)user;
	if (!(severity & (VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT)))
		return VK_FALSE;
	pthread_mutex_lock(&msg_mu);
	if (nmsg < VKL_MAX_MSG)
		msgs[nmsg++] = strdup(data && data->pMessage ? data->pMessage : "(no message)");
	else
		dropped++;
	pthread_mutex_unlock(&msg_mu);
	return VK_FALSE;
}

int vkl_take_messages(char **out, int max, int *more) {
	pthread_mutex_lock(&msg_mu);
	int n = nmsg < max ? nmsg : max;
	for (int i = 0; i < n; i++) out[i] = msgs[i];
	for (int i = n; i < nmsg; i++) free(msgs[i]);
	*more = dropped + (nmsg - n);
	nmsg = dropped = 0;
	pthread_mutex_unlock(&msg_mu);
	return n;
}

void vkl_clear_messages(void) {
	pthread_mutex_lock(&msg_mu);
	for (int i = 0; i < nmsg; i++) free(msgs[i]);
	nmsg = dropped = 0;
	pthread_mutex_unlock(&msg_mu);
}

// ---- Instance ----
static int has_layer(const char *name) {
	uint32_t n = 0;
	if (p_EnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0) return 0;
	VkLayerProperties *props = calloc(n, sizeof *props);
	int found = 0;
	if (p_EnumerateInstanceLayerProperties(&n, props) == VK_SUCCESS)
		for (uint32_t i = 0; i < n; i++)
			if (!strcmp(props[i].layerName, name)) found = 1;
	free(props);
	return found;
}

static int has_instance_ext(const char *name) {
	uint32_t n = 0;
	if (p_EnumerateInstanceExtensionProperties(NULL, &n, NULL) != VK_SUCCESS || n == 0) return 0;
	VkExtensionProperties *props = calloc(n, sizeof *props);
	int found = 0;
	if (p_EnumerateInstanceExtensionProperties(NULL, &n, props) == VK_SUCCESS)
		for (uint32_t i = 0; i < n; i++)
			if (!strcmp(props[i].extensionName, name)) found = 1;
	free(props);
	return found;
}

#define LOAD(inst, name) p_##name = (PFN_vk##name)gipa(inst, "vk" #name)

VkResult vkl_create_instance(int validation, VkInstance *out, VkDebugUtilsMessengerEXT *messenger,
			      int *validation_enabled) {
	uint32_t api = VK_API_VERSION_1_1;
	if (p_EnumerateInstanceVersion) p_EnumerateInstanceVersion(&api);
	if (api > VK_API_VERSION_1_3) api = VK_API_VERSION_1_3;
	VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
				 .pApplicationName = "vklora",
				 .pEngineName = "vklora",
				 .apiVersion = api};
	const char *layers[1];
	const char *exts[2];
	uint32_t nlayers = 0, nexts = 0;
	int debug = 0;
	if (validation && has_layer("VK_LAYER_KHRONOS_validation")) layers[nlayers++] = "VK_LAYER_KHRONOS_validation";
	if (nlayers && has_instance_ext(VK_EXT_DEBUG_UTILS_EXTENSION_NAME)) {
		exts[nexts++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
		debug = 1;
	}
	VkInstanceCreateInfo info = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
				     .pApplicationInfo = &app,
				     .enabledLayerCount = nlayers,
				     .ppEnabledLayerNames = layers,
				     .enabledExtensionCount = nexts,
				     .ppEnabledExtensionNames = exts};
	VkResult r = p_CreateInstance(&info, NULL, out);
	if (r != VK_SUCCESS) return r;
	VkInstance inst = *out;
	LOAD(inst, DestroyInstance);
	LOAD(inst, EnumeratePhysicalDevices);
	LOAD(inst, GetPhysicalDeviceProperties2);
	LOAD(inst, GetPhysicalDeviceFeatures2);
	LOAD(inst, GetPhysicalDeviceQueueFamilyProperties);
	LOAD(inst, GetPhysicalDeviceMemoryProperties);
	LOAD(inst, EnumerateDeviceExtensionProperties);
	LOAD(inst, CreateDevice);
	LOAD(inst, CreateDebugUtilsMessengerEXT);
	LOAD(inst, DestroyDebugUtilsMessengerEXT);
	LOAD(inst, CreateDescriptorSetLayout);
	LOAD(inst, DestroyDescriptorSetLayout);
	LOAD(inst, CreatePipelineLayout);
	LOAD(inst, CreateShaderModule);
	LOAD(inst, DestroyShaderModule);
	LOAD(inst, CreateComputePipelines);
	LOAD(inst, CreateBuffer);
	LOAD(inst, GetBufferMemoryRequirements);
	LOAD(inst, AllocateMemory);
	LOAD(inst, BindBufferMemory);
	LOAD(inst, BeginCommandBuffer);
	LOAD(inst, QueueSubmit);
	LOAD(inst, WaitForFences);
	LOAD(inst, ResetFences);
	LOAD(inst, CreateCommandPool);
	LOAD(inst, AllocateCommandBuffers);
	LOAD(inst, CreateFence);
	LOAD(inst, CreateQueryPool);
	LOAD(inst, CmdPipelineBarrier);
	LOAD(inst, CmdCopyBuffer);
	LOAD(inst, DestroyCommandPool);
	LOAD(inst, MapMemory);
	LOAD(inst, UnmapMemory);
	LOAD(inst, DestroyBuffer);
	LOAD(inst, CreatePipelineCache);
	LOAD(inst, GetPipelineCacheData);
	LOAD(inst, FreeMemory);
	LOAD(inst, GetPipelineExecutablePropertiesKHR); // NULL without the extension
	LOAD(inst, GetPipelineExecutableStatisticsKHR);
	LOAD(inst, CmdBindPipeline);
	LOAD(inst, CmdPushConstants);
	LOAD(inst, CmdDispatch);
	LOAD(inst, CmdPushDescriptorSetKHR);
	p_GetCoopMatProps = (pfn_coopmat_props)gipa(inst, "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR");
	*validation_enabled = nlayers > 0;
	*messenger = VK_NULL_HANDLE;
	if (debug && p_CreateDebugUtilsMessengerEXT) {
		VkDebugUtilsMessengerCreateInfoEXT mi = {
		    .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
		    .messageSeverity =
			VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
		    .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
				   VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
				   VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
		    .pfnUserCallback = on_message};
		r = p_CreateDebugUtilsMessengerEXT(inst, &mi, NULL, messenger);
		if (r != VK_SUCCESS) {
			p_DestroyInstance(inst, NULL);
			return r;
		}
	}
	return VK_SUCCESS;
}

void vkl_destroy_instance(VkInstance inst, VkDebugUtilsMessengerEXT messenger) {
	if (messenger && p_DestroyDebugUtilsMessengerEXT) p_DestroyDebugUtilsMessengerEXT(inst, messenger, NULL);
	p_DestroyInstance(inst, NULL);
}

VkResult vkl_enumerate_physical(VkInstance inst, uint32_t *count, VkPhysicalDevice *out) {
	return p_EnumeratePhysicalDevices(inst, count, out);
}

PFN_vkVoidFunction vkl_proc(VkInstance inst, const char *name) { return gipa(inst, name); }

// ---- Pipelines: one descriptor-set layout (push descriptors, N storage
// buffers) and one push-constant range shared by every kernel of a size. ----
VkResult vkl_create_layout(VkDevice dev, uint32_t bindings, uint32_t push_size, VkDescriptorSetLayout *set_layout,
			   VkPipelineLayout *layout) {
	VkDescriptorSetLayoutBinding b[16];
	if (bindings > 16) return VK_ERROR_INITIALIZATION_FAILED;
	for (uint32_t i = 0; i < bindings; i++)
		b[i] = (VkDescriptorSetLayoutBinding){.binding = i,
						      .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
						      .descriptorCount = 1,
						      .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT};
	VkDescriptorSetLayoutCreateInfo si = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
					      .flags = VK_DESCRIPTOR_SET_LAYOUT_CREATE_PUSH_DESCRIPTOR_BIT_KHR,
					      .bindingCount = bindings,
					      .pBindings = b};
	VkResult r = p_CreateDescriptorSetLayout(dev, &si, NULL, set_layout);
	if (r != VK_SUCCESS) return r;
	VkPushConstantRange pc = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = push_size};
	VkPipelineLayoutCreateInfo li = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
					 .setLayoutCount = 1,
					 .pSetLayouts = set_layout,
					 .pushConstantRangeCount = push_size ? 1 : 0,
					 .pPushConstantRanges = &pc};
	r = p_CreatePipelineLayout(dev, &li, NULL, layout);
	if (r != VK_SUCCESS) {
		p_DestroyDescriptorSetLayout(dev, *set_layout, NULL);
		*set_layout = VK_NULL_HANDLE;
	}
	return r;
}

VkResult vkl_create_pipeline(VkDevice dev, VkPipelineCache cache, VkPipelineLayout layout, const uint32_t *code,
			     size_t code_bytes, const uint32_t *spec, uint32_t nspec, uint32_t required_subgroup,
			     int capture, VkResult fail_module, VkResult fail_pipeline, VkPipeline *pipeline,
			     VkShaderModule *module, int *stage) {
	VkShaderModuleCreateInfo mi = {
	    .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, .codeSize = code_bytes, .pCode = code};
	*stage = 1;
	*module = VK_NULL_HANDLE;
	*pipeline = VK_NULL_HANDLE;
	VkResult r = fail_module != VK_SUCCESS ? fail_module : p_CreateShaderModule(dev, &mi, NULL, module);
	if (r != VK_SUCCESS) return r;
	*stage = 2;
	VkSpecializationMapEntry entries[32];
	if (nspec > 32) nspec = 32;
	for (uint32_t i = 0; i < nspec; i++)
		entries[i] = (VkSpecializationMapEntry){.constantID = i, .offset = 4 * i, .size = 4};
	VkSpecializationInfo si = {
	    .mapEntryCount = nspec, .pMapEntries = entries, .dataSize = 4 * nspec, .pData = spec};
	VkPipelineShaderStageRequiredSubgroupSizeCreateInfo rs = {
	    .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_REQUIRED_SUBGROUP_SIZE_CREATE_INFO,
	    .requiredSubgroupSize = required_subgroup};
	VkComputePipelineCreateInfo ci = {
	    .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
	    .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
		      .pNext = required_subgroup ? &rs : NULL,
		      .stage = VK_SHADER_STAGE_COMPUTE_BIT,
		      .module = *module,
		      .pName = "main",
		      .pSpecializationInfo = nspec ? &si : NULL},
	    .layout = layout};
	if (capture) ci.flags |= VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR;
	r = fail_pipeline != VK_SUCCESS ? fail_pipeline : p_CreateComputePipelines(dev, cache, 1, &ci, NULL, pipeline);
	if (r != VK_SUCCESS) {
		*pipeline = VK_NULL_HANDLE;
		p_DestroyShaderModule(dev, *module, NULL);
		*module = VK_NULL_HANDLE;
	}
	return r;
}

void vkl_cmd_dispatch(VkDevice dev, VkCommandBuffer cb, VkPipeline pipe, VkPipelineLayout layout,
		      const vkl_binding *bindings, uint32_t nbind, const void *push, uint32_t push_size, uint32_t gx,
		      uint32_t gy, uint32_t gz) {
	(void)dev;
	VkDescriptorBufferInfo infos[16];
	VkWriteDescriptorSet writes[16];
	if (nbind > 16) nbind = 16;
	for (uint32_t i = 0; i < nbind; i++) {
		infos[i] = (VkDescriptorBufferInfo){bindings[i].buffer, bindings[i].offset, bindings[i].size};
		writes[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
						   .dstBinding = i,
						   .descriptorCount = 1,
						   .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
						   .pBufferInfo = &infos[i]};
	}
	p_CmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
	if (nbind) p_CmdPushDescriptorSetKHR(cb, VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, nbind, writes);
	if (push_size) p_CmdPushConstants(cb, layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_size, push);
	p_CmdDispatch(cb, gx, gy, gz);
}

int vkl_pipeline_stats(VkDevice dev, VkPipeline pipe, vkl_stat *out, uint32_t max) {
	if (!p_GetPipelineExecutablePropertiesKHR || !p_GetPipelineExecutableStatisticsKHR)
		return VK_ERROR_EXTENSION_NOT_PRESENT;
	VkPipelineInfoKHR pi = {.sType = VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR, .pipeline = pipe};
	VkPipelineExecutablePropertiesKHR ep[8];
	uint32_t ne = 8;
	for (uint32_t i = 0; i < ne; i++)
		ep[i] = (VkPipelineExecutablePropertiesKHR){.sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_PROPERTIES_KHR};
	VkResult r = p_GetPipelineExecutablePropertiesKHR(dev, &pi, &ne, ep);
	if (r < 0) return r;
	uint32_t got = 0;
	for (uint32_t e = 0; e < ne && got < max; e++) {
		VkPipelineExecutableInfoKHR ei = {
		    .sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR, .pipeline = pipe, .executableIndex = e};
		VkPipelineExecutableStatisticKHR st[32];
		uint32_t ns = 32;
		for (uint32_t i = 0; i < ns; i++)
			st[i] = (VkPipelineExecutableStatisticKHR){.sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR};
		r = p_GetPipelineExecutableStatisticsKHR(dev, &ei, &ns, st);
		if (r < 0) return r;
		for (uint32_t i = 0; i < ns && got < max; i++, got++) {
			vkl_stat *o = &out[got];
			snprintf(o->executable, sizeof o->executable, "%s", ep[e].name);
			snprintf(o->name, sizeof o->name, "%s", st[i].name);
			switch (st[i].format) {
			case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR: o->value = st[i].value.b32; break;
			case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR: o->value = (double)st[i].value.i64; break;
			case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR: o->value = (double)st[i].value.u64; break;
			default: o->value = st[i].value.f64; break;
			}
		}
	}
	return (int)got;
}

// ---- Per-step calls, with their structs on the C stack ----
VkResult vkl_create_buffer(VkDevice dev, VkDeviceSize size, VkBufferUsageFlags usage, VkBuffer *buf,
			   VkDeviceSize *req_size, uint32_t *req_bits) {
	VkBufferCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
				 .size = size,
				 .usage = usage,
				 .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
	VkResult r = p_CreateBuffer(dev, &ci, NULL, buf);
	if (r != VK_SUCCESS) return r;
	VkMemoryRequirements req;
	p_GetBufferMemoryRequirements(dev, *buf, &req);
	*req_size = req.size;
	*req_bits = req.memoryTypeBits;
	return VK_SUCCESS;
}

VkResult vkl_allocate_bind(VkDevice dev, VkBuffer buf, VkDeviceSize size, uint32_t type, VkDeviceMemory *mem,
			   int *bound) {
	VkMemoryAllocateInfo ai = {
	    .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = size, .memoryTypeIndex = type};
	*bound = 0;
	VkResult r = p_AllocateMemory(dev, &ai, NULL, mem);
	if (r != VK_SUCCESS) {
		*mem = VK_NULL_HANDLE; // the spec leaves it undefined on failure
		return r;
	}
	*bound = 1;
	return p_BindBufferMemory(dev, buf, *mem, 0);
}

VkResult vkl_new_submission(VkDevice dev, uint32_t family, VkCommandPool *pool, VkCommandBuffer *cb, VkFence *fence) {
	VkCommandPoolCreateInfo pi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
				      .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
				      .queueFamilyIndex = family};
	VkResult r = p_CreateCommandPool(dev, &pi, NULL, pool);
	if (r != VK_SUCCESS) return r;
	VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
					  .commandPool = *pool,
					  .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
					  .commandBufferCount = 1};
	r = p_AllocateCommandBuffers(dev, &ai, cb);
	if (r == VK_SUCCESS) {
		VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
		r = p_CreateFence(dev, &fi, NULL, fence);
	}
	if (r != VK_SUCCESS) {
		p_DestroyCommandPool(dev, *pool, NULL); // frees its command buffer too
		*pool = VK_NULL_HANDLE;
	}
	return r;
}

VkResult vkl_create_query_pool(VkDevice dev, uint32_t count, VkQueryPool *qp) {
	VkQueryPoolCreateInfo ci = {
	    .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO, .queryType = VK_QUERY_TYPE_TIMESTAMP, .queryCount = count};
	return p_CreateQueryPool(dev, &ci, NULL, qp);
}

VkResult vkl_begin(VkCommandBuffer cb) {
	VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
				       .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
	return p_BeginCommandBuffer(cb, &bi);
}

VkResult vkl_submit(VkQueue queue, VkCommandBuffer cb, VkFence fence) {
	VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &cb};
	return p_QueueSubmit(queue, 1, &si, fence);
}

VkResult vkl_wait_reset(VkDevice dev, VkFence fence) {
	VkResult r = p_WaitForFences(dev, 1, &fence, VK_TRUE, UINT64_MAX);
	if (r != VK_SUCCESS) return r;
	return p_ResetFences(dev, 1, &fence);
}

void vkl_cmd_barrier(VkCommandBuffer cb) {
	VkPipelineStageFlags stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
	VkAccessFlags access = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
			       VK_ACCESS_TRANSFER_WRITE_BIT;
	VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER, .srcAccessMask = access, .dstAccessMask = access};
	p_CmdPipelineBarrier(cb, stages, stages, 0, 1, &mb, 0, NULL, 0, NULL);
}

void vkl_cmd_copy(VkCommandBuffer cb, VkBuffer src, VkBuffer dst, VkDeviceSize src_off, VkDeviceSize dst_off,
		  VkDeviceSize size) {
	VkBufferCopy region = {.srcOffset = src_off, .dstOffset = dst_off, .size = size};
	p_CmdCopyBuffer(cb, src, dst, 1, &region);
}

VkResult vkl_map(VkDevice dev, VkDeviceMemory mem, VkDeviceSize size, void **p) {
	return p_MapMemory(dev, mem, 0, size, 0, p);
}

void vkl_destroy_buffer(VkDevice dev, VkBuffer buf, VkDeviceMemory mem, int mapped) {
	if (mapped) p_UnmapMemory(dev, mem);
	if (buf) p_DestroyBuffer(dev, buf, NULL);
	if (mem) p_FreeMemory(dev, mem, NULL);
}

VkResult vkl_create_pipeline_cache(VkDevice dev, const void *data, size_t size, VkPipelineCache *cache) {
	VkPipelineCacheCreateInfo ci = {
	    .sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO, .initialDataSize = size, .pInitialData = data};
	return p_CreatePipelineCache(dev, &ci, NULL, cache);
}

// The cache's data in a malloc'd buffer the caller frees (*data NULL when
// it is empty). The two-call idiom, retried while the cache grows between
// the calls (VK_INCOMPLETE).
VkResult vkl_pipeline_cache_data(VkDevice dev, VkPipelineCache cache, void **data, size_t *size) {
	*data = NULL;
	*size = 0;
	for (int tries = 0; tries < 4; tries++) {
		size_t n = 0;
		VkResult r = p_GetPipelineCacheData(dev, cache, &n, NULL);
		if (r != VK_SUCCESS || n == 0) return r;
		void *buf = malloc(n);
		if (!buf) return VK_ERROR_OUT_OF_HOST_MEMORY;
		r = p_GetPipelineCacheData(dev, cache, &n, buf);
		if (r == VK_SUCCESS) {
			*data = buf;
			*size = n;
			return r;
		}
		free(buf);
		if (r != VK_INCOMPLETE) return r;
	}
	return VK_INCOMPLETE;
}

uint32_t vkl_memory_types(VkPhysicalDevice phys, uint32_t flags[VK_MAX_MEMORY_TYPES]) {
	VkPhysicalDeviceMemoryProperties mp;
	p_GetPhysicalDeviceMemoryProperties(phys, &mp);
	for (uint32_t i = 0; i < mp.memoryTypeCount; i++) flags[i] = mp.memoryTypes[i].propertyFlags;
	return mp.memoryTypeCount;
}
