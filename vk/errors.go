package vk

import (
	"errors"
	"fmt"

	vulkan "github.com/vulkan-go/vulkan"
)

// Sentinels for errors.Is. A ResultError matches the sentinel of its result.
var (
	ErrDeviceLost         = errors.New("device lost")
	ErrOutOfDeviceMemory  = errors.New("out of device memory")
	ErrOutOfHostMemory    = errors.New("out of host memory")
	ErrMemoryMapFailed    = errors.New("memory map failed")
	ErrNoDevice           = errors.New("no Vulkan device")
	ErrUnsupported        = errors.New("not supported by this device")
	ErrTooLarge           = errors.New("too large for this device")
	ErrReleased           = errors.New("use after Release")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrPending            = errors.New("used by a recording not yet submitted")
	ErrValidationMessages = errors.New("Vulkan validation layer reported problems")
)

// ResultError is a failed Vulkan call: which call, and what it returned.
type ResultError struct {
	Call   string
	Result int32
}

func (e *ResultError) Error() string {
	return fmt.Sprintf("vk: %s: %s", e.Call, resultName(e.Result))
}

// Is lets errors.Is(err, ErrDeviceLost) and friends see through the result.
func (e *ResultError) Is(target error) bool {
	switch target {
	case ErrDeviceLost:
		return e.Result == int32(vulkan.ErrorDeviceLost)
	case ErrOutOfDeviceMemory:
		return e.Result == int32(vulkan.ErrorOutOfDeviceMemory)
	case ErrOutOfHostMemory:
		return e.Result == int32(vulkan.ErrorOutOfHostMemory)
	case ErrMemoryMapFailed:
		return e.Result == int32(vulkan.ErrorMemoryMapFailed)
	}
	return false
}

// check wraps a non-success result with the call's name.
func check(call string, r vulkan.Result) error {
	if r == vulkan.Success {
		return nil
	}
	return &ResultError{Call: call, Result: int32(r)}
}

func resultName(r int32) string {
	names := map[int32]string{
		1:           "not ready (VK_NOT_READY)",
		2:           "timeout (VK_TIMEOUT)",
		5:           "incomplete (VK_INCOMPLETE)",
		-1:          "out of host memory (VK_ERROR_OUT_OF_HOST_MEMORY)",
		-2:          "out of device memory (VK_ERROR_OUT_OF_DEVICE_MEMORY)",
		-3:          "initialization failed (VK_ERROR_INITIALIZATION_FAILED)",
		-4:          "device lost (VK_ERROR_DEVICE_LOST)",
		-5:          "memory map failed (VK_ERROR_MEMORY_MAP_FAILED)",
		-6:          "layer not present (VK_ERROR_LAYER_NOT_PRESENT)",
		-7:          "extension not present (VK_ERROR_EXTENSION_NOT_PRESENT)",
		-8:          "feature not present (VK_ERROR_FEATURE_NOT_PRESENT)",
		-9:          "incompatible driver (VK_ERROR_INCOMPATIBLE_DRIVER)",
		-10:         "too many objects (VK_ERROR_TOO_MANY_OBJECTS)",
		-13:         "unknown error (VK_ERROR_UNKNOWN)",
		-1000069000: "out of pool memory (VK_ERROR_OUT_OF_POOL_MEMORY)",
		-1000012000: "invalid shader (VK_ERROR_INVALID_SHADER_NV)",
	}
	if n, ok := names[r]; ok {
		return n
	}
	return fmt.Sprintf("VkResult %d", r)
}
