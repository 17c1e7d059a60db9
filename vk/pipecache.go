package vk

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	vulkan "github.com/vulkan-go/vulkan"

	"github.com/vklora/vklora/internal/fsutil"
)

// A pipeline cache file (Options.PipelineCacheDir) keeps the driver's
// compiled kernels between processes. Drivers keep their own disk caches,
// but not everywhere: a container starts with an empty home directory, and
// the GPU machine this engine is measured on starts fresh for every job.
// There NVIDIA's compiler spends 11–39 s on each workgroup-scope matmul
// kernel, a minute or more of every cold start.
//
// The file is the driver's vkGetPipelineCacheData payload behind a header
// of the engine's own: magic, payload length and its SHA-256, so that a
// truncated or damaged file is never handed to a driver (which trusts the
// payload after the driver's own header). The payload's Vulkan header
// (vendor, device, pipelineCacheUUID) must match the device: a file of
// another device or driver version is ignored and overwritten at the next
// save.
const (
	pipelineCacheMagic = "VKLPCv1\n"
	// maxPipelineCacheBytes bounds what is read back: a file larger than
	// this is not the engine's.
	maxPipelineCacheBytes = 1 << 30
	pipelineCacheHeader   = len(pipelineCacheMagic) + 8 + sha256.Size
)

// encodePipelineCache wraps the driver's payload in the file's header.
func encodePipelineCache(payload []byte) []byte {
	out := make([]byte, 0, pipelineCacheHeader+len(payload))
	out = append(out, pipelineCacheMagic...)
	out = binary.LittleEndian.AppendUint64(out, uint64(len(payload)))
	sum := sha256.Sum256(payload)
	out = append(out, sum[:]...)
	return append(out, payload...)
}

// decodePipelineCache returns the payload of file b if it is whole and for
// the device info describes, else nil and why not.
func decodePipelineCache(b []byte, info *DeviceInfo) ([]byte, string) {
	if len(b) < pipelineCacheHeader || string(b[:len(pipelineCacheMagic)]) != pipelineCacheMagic {
		return nil, "not a vklora pipeline cache"
	}
	n := binary.LittleEndian.Uint64(b[len(pipelineCacheMagic):])
	payload := b[pipelineCacheHeader:]
	if uint64(len(payload)) != n {
		return nil, fmt.Sprintf("%d payload bytes, the header says %d (truncated?)", len(payload), n)
	}
	sum := sha256.Sum256(payload)
	if !bytes.Equal(sum[:], b[len(pipelineCacheMagic)+8:pipelineCacheHeader]) {
		return nil, "checksum mismatch"
	}
	if why := checkVulkanHeader(payload, info); why != "" {
		return nil, why
	}
	return payload, ""
}

// checkVulkanHeader says why a driver payload is not for the device info
// describes, or "" when it is: its VkPipelineCacheHeaderVersionOne
// (headerSize, headerVersion, vendorID, deviceID as uint32, then
// pipelineCacheUUID [16]) must be whole and match.
func checkVulkanHeader(payload []byte, info *DeviceInfo) string {
	const vkHeader = 32
	if len(payload) < vkHeader {
		return "no Vulkan pipeline cache header"
	}
	u32 := func(i int) uint32 { return binary.LittleEndian.Uint32(payload[4*i:]) }
	switch {
	case u32(0) < vkHeader || u32(1) != 1:
		return fmt.Sprintf("Vulkan pipeline cache header size %d, version %d", u32(0), u32(1))
	case u32(2) != info.VendorID || u32(3) != info.DeviceID || !bytes.Equal(payload[16:32], info.PipelineCacheUUID[:]):
		return fmt.Sprintf("made for vendor %#x device %#x cache UUID %x, not this device and driver", u32(2), u32(3), payload[16:32])
	}
	return ""
}

// loadPipelineCache reads the payload of the cache file at path for info,
// or returns nil and why not (for the log): the file is missing, cannot
// be read (fsutil.ReadSmall: a regular file, never a FIFO, of bounded
// size), is damaged, or is of another device or driver. A cache is worth
// having, never worth failing for, so none of these is an error.
func loadPipelineCache(path string, info *DeviceInfo) ([]byte, string) {
	b, err := fsutil.ReadSmall(path, maxPipelineCacheBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, "no file yet"
	case err != nil:
		return nil, strings.TrimPrefix(err.Error(), path+": ") // the log line names the path
	}
	return decodePipelineCache(b, info)
}

// createPipelineCache makes the device's VkPipelineCache, seeded with
// initial (nil for none).
func (d *Device) createPipelineCache(initial []byte) error {
	var data unsafe.Pointer
	if len(initial) > 0 {
		data = C.CBytes(initial)
		defer C.free(data)
	}
	var cache C.VkPipelineCache
	if err := check("vkCreatePipelineCache", vulkan.Result(C.vkl_create_pipeline_cache(d.cdev(), data, C.size_t(len(initial)), &cache))); err != nil {
		return err
	}
	d.cache = vulkan.PipelineCache(unsafe.Pointer(cache))
	return nil
}

// pipelineCacheFile is the cache file of the device info describes in dir
// ("" when dir is): one per vendor, device and pipelineCacheUUID, which
// drivers change with every build, so that devices and driver versions
// never overwrite each other's files.
func pipelineCacheFile(dir string, info *DeviceInfo) string {
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, fmt.Sprintf("%04x-%04x-%x.vkpc", info.VendorID, info.DeviceID, info.PipelineCacheUUID))
}

// PipelineCacheFile is the file that keeps the device's compiled kernels
// between processes (Options.PipelineCacheDir), or "" for none.
func (d *Device) PipelineCacheFile() string { return d.pcFile }

// openPipelineCache creates the device's pipeline cache, seeded from its
// cache file (pcFile) when it has one.
func (d *Device) openPipelineCache() error {
	path := d.pcFile
	if path == "" {
		return d.createPipelineCache(nil)
	}
	payload, why := loadPipelineCache(path, &d.info)
	if payload != nil {
		d.pcSum = sha256.Sum256(payload)
	}
	if d.klog != nil {
		if payload != nil {
			fmt.Fprintf(d.klog, "vk: pipeline cache %s: %d bytes loaded\n", path, len(payload))
		} else {
			fmt.Fprintf(d.klog, "vk: pipeline cache %s: starting empty (%s)\n", path, why)
		}
	}
	return d.createPipelineCache(payload)
}

// SavePipelineCache writes the device's compiled kernels to its cache file
// (PipelineCacheFile; atomically, fsutil.WriteFileAtomic), creating its
// directory, and returns what
// went wrong. Device.Release saves too when the device built kernels, but
// only logs a failure (Options.KernelLog): call this to see the error, or
// to save earlier, e.g. after a training loop's first step. Without a
// cache file it does nothing.
func (d *Device) SavePipelineCache() error {
	if err := d.alive(); err != nil {
		return err
	}
	if d.pcFile == "" {
		return nil
	}
	d.building.Wait() // Prepare's builds still compiling belong in it
	d.pcmu.Lock()
	defer d.pcmu.Unlock()
	var data unsafe.Pointer
	var size C.size_t
	if err := check("vkGetPipelineCacheData", vulkan.Result(C.vkl_pipeline_cache_data(d.cdev(), C.VkPipelineCache(unsafe.Pointer(d.cache)), &data, &size))); err != nil {
		return fmt.Errorf("%w (pipeline cache %s)", err, d.pcFile)
	}
	defer C.free(data)
	if size == 0 {
		return nil
	}
	payload := C.GoBytes(data, C.int(size))
	// What the next Open would refuse is not written: a driver has been
	// seen to return fewer bytes than its own header (Mesa 26.2's
	// lavapipe: 20 of the 32 it announced).
	if why := checkVulkanHeader(payload, &d.info); why != "" {
		if d.klog != nil {
			fmt.Fprintf(d.klog, "vk: pipeline cache %s: not saved: the driver's %d bytes: %s\n", d.pcFile, len(payload), why)
		}
		return nil
	}
	sum := sha256.Sum256(payload)
	if sum == d.pcSum {
		return nil // what the file holds already
	}
	if err := os.MkdirAll(filepath.Dir(d.pcFile), 0o755); err != nil {
		return fmt.Errorf("vk: pipeline cache: %w", err)
	}
	if err := fsutil.WriteFileAtomic(d.pcFile, encodePipelineCache(payload)); err != nil {
		return fmt.Errorf("vk: pipeline cache: %w", err)
	}
	d.pcSum = sum
	if d.klog != nil {
		fmt.Fprintf(d.klog, "vk: pipeline cache %s: %d bytes saved\n", d.pcFile, int(size))
	}
	return nil
}
