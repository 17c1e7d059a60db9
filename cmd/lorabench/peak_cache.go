package main

// peak_cache.go: the per-device cache of `lorabench peak`. One JSON file
// (a peakDoc) per device and driver build under
//
//	-cache DIR, else $VKLORA_PEAK_CACHE, else os.UserCacheDir()/vklora/peak
//	(~/.cache/vklora/peak on Linux, $XDG_CACHE_HOME/vklora/peak when set)
//
// named <vendorID>-<deviceID>-<hash of the key>.json. The key (peakKey) is
// the device's identity and driver version together with a hash of the
// peak kernels' SPIR-V and peakSchema, so a new driver, new kernels or a
// changed measurement never read an old result; the key stored in the file
// must match too. A file that cannot be read or parsed is measured again
// and overwritten, never fatal.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/vklora/vklora/internal/fsutil"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
)

// peakCacheEnv names the environment variable that overrides the cache
// directory (the -cache flag of `peak` overrides both).
const peakCacheEnv = "VKLORA_PEAK_CACHE"

// peakKey identifies what a cached peak was measured on and with.
type peakKey struct {
	Schema            int    `json:"schema"`
	VendorID          uint32 `json:"vendor_id"`
	DeviceID          uint32 `json:"device_id"`
	DriverVersion     uint32 `json:"driver_version"`
	Driver            string `json:"driver"`      // driverName
	DriverInfo        string `json:"driver_info"` // driverInfo (e.g. the Mesa or NVIDIA version)
	Name              string `json:"name"`
	API               string `json:"api"`
	PipelineCacheUUID string `json:"pipeline_cache_uuid"`
	Kernels           string `json:"kernels"` // sha256 of the peak kernels' SPIR-V
}

func peakKeyOf(info vk.DeviceInfo) peakKey {
	return peakKey{
		Schema: peakSchema, VendorID: info.VendorID, DeviceID: info.DeviceID, DriverVersion: info.DriverVersion,
		Driver: info.Driver, DriverInfo: info.DriverInfo, Name: info.Name, API: info.APIVersion,
		PipelineCacheUUID: hex.EncodeToString(info.PipelineCacheUUID[:]), Kernels: peakKernelsHash(),
	}
}

// peakKernelsHash hashes the SPIR-V of every peak shader, in table order.
func peakKernelsHash() string {
	h := sha256.New()
	for _, k := range shaders.PeakKeys() {
		s, err := shaders.Lookup(k)
		if err != nil {
			continue
		}
		fmt.Fprintf(h, "%s %d\n", k.Name(), len(s.SPIRV))
		h.Write(s.SPIRV)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// file is the key's cache file in dir.
func (k peakKey) file(dir string) string {
	b, _ := json.Marshal(k) // a struct of strings and ints: never fails
	sum := sha256.Sum256(b)
	return filepath.Join(dir, fmt.Sprintf("%04x-%04x-%s.json", k.VendorID, k.DeviceID, hex.EncodeToString(sum[:])[:16]))
}

// defaultPeakCacheHint is the default directory as help texts show it.
func defaultPeakCacheHint() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "vklora", "peak")
	}
	return "os.UserCacheDir()/vklora/peak"
}

// peakCacheDir resolves the cache directory: flagDir, else
// $VKLORA_PEAK_CACHE, else os.UserCacheDir()/vklora/peak.
func peakCacheDir(flagDir string) (string, error) {
	if flagDir != "" {
		return flagDir, nil
	}
	if d := os.Getenv(peakCacheEnv); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for the peak (%v): set $%s or -cache", err, peakCacheEnv)
	}
	return filepath.Join(d, "vklora", "peak"), nil
}

// errPeakMiss: the cache has no usable entry for the key (absent, or for
// another key); other errors from readPeakCache mean the file is corrupt.
var errPeakMiss = errors.New("no cached peak")

// readPeakCache returns the cached peak of key in dir. It returns an
// error wrapping errPeakMiss when there is none, and another error when the
// file exists but is unreadable, not a peak document or for another key.
func readPeakCache(dir string, key peakKey) (*peakDoc, error) {
	path := key.file(dir)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", path, errPeakMiss)
	}
	if err != nil {
		return nil, err
	}
	var d peakDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	switch {
	case d.Schema != peakSchema || len(d.Rows) == 0:
		return nil, fmt.Errorf("%s: schema %d with %d rows, want schema %d with rows", path, d.Schema, len(d.Rows), peakSchema)
	case d.Key != key:
		return nil, fmt.Errorf("%s: stored for another device, driver or kernels: %w", path, errPeakMiss)
	}
	d.Cached, d.File = true, path
	return &d, nil
}

// writePeakCache stores d under its key in dir (created if needed),
// atomically: a reader sees the old file or the new one.
func writePeakCache(dir string, d *peakDoc) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := d.Key.file(dir)
	c := *d
	c.Cached, c.File = false, ""
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return "", err
	}
	if err := fsutil.WriteFileAtomic(path, append(b, '\n')); err != nil {
		return "", err
	}
	return path, nil
}

// loadOrMeasurePeak returns dev's peak from the cache in dir, or (when
// fresh, missing, stale or corrupt) measures it and stores it there. A
// cache that cannot be written is reported on stderr and the measured
// result returned anyway.
func loadOrMeasurePeak(dev *vk.Device, dir string, fresh bool, reps int, status, stderr io.Writer) (*peakDoc, error) {
	key := peakKeyOf(dev.Info())
	if !fresh {
		d, err := readPeakCache(dir, key)
		if err == nil {
			return d, nil
		}
		if !errors.Is(err, errPeakMiss) {
			fmt.Fprintf(stderr, "peak: ignoring the cache file: %v; measuring again\n", err)
		}
	}
	d, err := measurePeak(dev, reps, status)
	if err != nil {
		return nil, fmt.Errorf("peak: %w", err)
	}
	path, err := writePeakCache(dir, d)
	if err != nil {
		fmt.Fprintf(stderr, "peak: not cached: %v\n", err)
		return d, nil
	}
	d.File = path
	return d, nil
}

// peakCacheFiles lists the cache files in dir (for tests and tidying).
func peakCacheFiles(dir string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	sort.Strings(m)
	return m
}
