package vk

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"fmt"
	"sync"
	"unsafe"

	vulkan "github.com/vulkan-go/vulkan"
)

// The engine keeps one VkInstance per process, shared by every Device and
// destroyed when the last one is released. Validation is decided by whoever
// creates it (Options.Validation; the tests ask for it).
var global struct {
	mu         sync.Mutex
	refs       int
	handle     C.VkInstance
	messenger  C.VkDebugUtilsMessengerEXT
	validation bool
	phys       []C.VkPhysicalDevice
	infos      []DeviceInfo
}

func loadVulkan() error {
	var buf [512]C.char
	if C.vkl_load(&buf[0], C.int(len(buf))) != 0 {
		return fmt.Errorf("vk: load Vulkan loader: %s: %w (install libvulkan1 and a driver such as mesa-vulkan-drivers)",
			C.GoString(&buf[0]), ErrNoDevice)
	}
	vulkan.SetGetInstanceProcAddr(unsafe.Pointer(C.vkl_get_instance_proc_addr()))
	if err := vulkan.Init(); err != nil {
		return fmt.Errorf("vk: vulkan-go init: %w", err)
	}
	return nil
}

// acquireInstance returns the process instance, creating it on first use.
func acquireInstance(validation bool) error {
	global.mu.Lock()
	defer global.mu.Unlock()
	if global.refs > 0 {
		global.refs++
		return nil
	}
	if err := loadVulkan(); err != nil {
		return err
	}
	var inst C.VkInstance
	var msgr C.VkDebugUtilsMessengerEXT
	var enabled C.int
	v := 0
	if validation {
		v = 1
	}
	if err := check("vkCreateInstance", vulkan.Result(C.vkl_create_instance(C.int(v), &inst, &msgr, &enabled))); err != nil {
		return err
	}
	if err := vulkan.InitInstance(vulkan.Instance(unsafe.Pointer(inst))); err != nil {
		C.vkl_destroy_instance(inst, msgr)
		return fmt.Errorf("vk: vulkan-go InitInstance: %w", err)
	}
	var n C.uint32_t
	if err := check("vkEnumeratePhysicalDevices", vulkan.Result(C.vkl_enumerate_physical(inst, &n, nil))); err != nil {
		C.vkl_destroy_instance(inst, msgr)
		return err
	}
	phys := make([]C.VkPhysicalDevice, n)
	if n > 0 {
		if err := check("vkEnumeratePhysicalDevices", vulkan.Result(C.vkl_enumerate_physical(inst, &n, &phys[0]))); err != nil {
			C.vkl_destroy_instance(inst, msgr)
			return err
		}
	}
	infos := make([]DeviceInfo, len(phys))
	for i, p := range phys {
		var c C.vkl_caps
		C.vkl_probe(inst, p, &c)
		infos[i] = infoFromCaps(i, &c)
	}
	global.handle, global.messenger, global.validation = inst, msgr, enabled != 0
	global.phys, global.infos = phys, infos
	global.refs = 1
	return nil
}

func releaseInstance() {
	global.mu.Lock()
	defer global.mu.Unlock()
	if global.refs == 0 {
		return
	}
	global.refs--
	if global.refs == 0 {
		C.vkl_destroy_instance(global.handle, global.messenger)
		global.handle, global.messenger, global.phys, global.infos = nil, nil, nil, nil
	}
}

// ValidationEnabled reports whether the validation layer is active on the
// current instance (it is only when installed and asked for).
func ValidationEnabled() bool {
	global.mu.Lock()
	defer global.mu.Unlock()
	return global.refs > 0 && global.validation
}

// ValidationMessages returns the warnings and errors the validation layer has
// reported since the last call, and clears them.
func ValidationMessages() []string {
	var ptrs [64]*C.char
	var more C.int
	n := int(C.vkl_take_messages(&ptrs[0], C.int(len(ptrs)), &more))
	out := make([]string, 0, n+1)
	for _, p := range ptrs[:n] {
		out = append(out, C.GoString(p))
		C.free(unsafe.Pointer(p))
	}
	if more > 0 {
		out = append(out, fmt.Sprintf("(%d more messages dropped)", int(more)))
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Devices lists the Vulkan devices of this machine with their capabilities.
func Devices() ([]DeviceInfo, error) {
	if err := acquireInstance(false); err != nil {
		return nil, err
	}
	defer releaseInstance()
	global.mu.Lock()
	defer global.mu.Unlock()
	return append([]DeviceInfo(nil), global.infos...), nil
}
