package vk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/shaders"
)

// cachePayload is a driver payload with a Vulkan header for info.
func cachePayload(info *DeviceInfo, body string) []byte {
	var b []byte
	for _, v := range []uint32{32, 1, info.VendorID, info.DeviceID} {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	b = append(b, info.PipelineCacheUUID[:]...)
	return append(b, body...)
}

// A cache file round-trips, and every way it can be wrong is caught before
// a driver sees the payload: another file, truncation, a flipped byte,
// another device or driver, a bad Vulkan header.
func TestPipelineCacheFileDecode(t *testing.T) {
	info := &DeviceInfo{VendorID: 0x10de, DeviceID: 0x2335, PipelineCacheUUID: [16]byte{1, 2, 3}}
	payload := cachePayload(info, "compiled kernels")
	file := encodePipelineCache(payload)
	got, why := decodePipelineCache(file, info)
	require.Equal(t, payload, got, why)

	other := *info
	other.PipelineCacheUUID[0] = 9 // a driver update
	flipped := bytes.Clone(file)
	flipped[len(flipped)-1] ^= 1
	badVersion := cachePayload(info, "x")
	badVersion[4] = 2
	for name, tc := range map[string]struct {
		file []byte
		info *DeviceInfo
		why  string
	}{
		"empty":         {nil, info, "not a vklora pipeline cache"},
		"other file":    {[]byte("GGUF and some bytes that are long enough to hold a header......"), info, "not a vklora"},
		"truncated":     {file[:len(file)-3], info, "truncated"},
		"flipped byte":  {flipped, info, "checksum"},
		"other driver":  {file, &other, "not this device and driver"},
		"no vk header":  {encodePipelineCache([]byte("short")), info, "no Vulkan pipeline cache header"},
		"header vers 2": {encodePipelineCache(badVersion), info, "version 2"},
	} {
		got, why := decodePipelineCache(tc.file, tc.info)
		require.Nil(t, got, name)
		require.Contains(t, why, tc.why, name)
	}
}

// A device with a cache file writes it at Release once it has built
// kernels, and the next device reads it back (logging that it did); an
// unchanged cache is not rewritten; a damaged file is ignored, logged and
// replaced; a path that cannot be written fails SavePipelineCache and
// Release, naming it.
func TestPipelineCacheFileAcrossDevices(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sub")
	var path string
	open := func() (*Device, *strings.Builder) {
		var log strings.Builder
		d, err := Open(Options{PipelineCacheDir: dir, KernelLog: &log})
		require.NoError(t, err)
		path = d.PipelineCacheFile()
		require.Equal(t, dir, filepath.Dir(path))
		require.Contains(t, filepath.Base(path), fmt.Sprintf("%x", d.Info().PipelineCacheUUID), "one file per driver build")
		return d, &log
	}
	build := func(d *Device) {
		_, err := d.ShaderKernel(shaders.FillKey{}, 48)
		require.NoError(t, err)
	}

	d, log := open()
	require.Contains(t, log.String(), "starting empty (no file yet)")
	build(d)
	require.NoError(t, d.Release())
	saved, err := os.ReadFile(path)
	if err != nil {
		// A driver whose cache has no data, or none with a valid header
		// (the log says which), writes no file.
		t.Skipf("%s: no pipeline cache data saved (%v): %s", d.Info().Name, err, log.String())
	}
	_, why := decodePipelineCache(saved, &d.info)
	require.Empty(t, why, "the saved file decodes")

	d, log = open()
	require.Contains(t, log.String(), "bytes loaded")
	build(d)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, d.Release())
	st2, err := os.Stat(path)
	require.NoError(t, err)
	if bytes.Equal(saved, mustRead(t, path)) {
		require.Equal(t, st.ModTime(), st2.ModTime(), "an unchanged cache is not rewritten")
	}

	require.NoError(t, os.WriteFile(path, []byte("garbage"), 0o644))
	d, log = open()
	require.Contains(t, log.String(), "starting empty (not a vklora pipeline cache)")
	build(d)
	require.NoError(t, d.Release())
	_, why = decodePipelineCache(mustRead(t, path), &d.info)
	require.Empty(t, why, "the damaged file was replaced")

	// A directory where the file should be, or a file where the directory
	// should be: Open goes on without the cache and logs why. A directory
	// that turns into a file before the save: SavePipelineCache fails,
	// naming it; Release only logs it.
	require.NoError(t, os.Remove(path))
	require.NoError(t, os.Mkdir(path, 0o755))
	d, log = open()
	require.Contains(t, log.String(), "starting empty (not a regular file")
	require.NoError(t, d.Release())
	blocker := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(blocker, nil, 0o644))
	var blog strings.Builder
	d, err = Open(Options{PipelineCacheDir: blocker, KernelLog: &blog})
	require.NoError(t, err)
	require.Contains(t, blog.String(), "not a directory")
	require.NoError(t, d.Release())
	later := filepath.Join(t.TempDir(), "later")
	var llog strings.Builder
	d, err = Open(Options{PipelineCacheDir: later, KernelLog: &llog})
	require.NoError(t, err, "a missing file (and directory) is no error")
	build(d)
	require.NoError(t, os.WriteFile(later, nil, 0o644))
	err = d.SavePipelineCache()
	require.ErrorContains(t, err, "pipeline cache")
	require.ErrorContains(t, err, later)
	require.NoError(t, d.Release(), "a cache that cannot be saved fails nothing")
	require.Contains(t, llog.String(), later, "Release logs the failed save")
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}
