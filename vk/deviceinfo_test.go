package vk_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// TestDriverIdentity: the driver version and pipeline-cache UUID (which
// key caches of per-driver results) are probed, and the same on every
// listing of the same device.
func TestDriverIdentity(t *testing.T) {
	d := vktest.Device(t)
	info := d.Info()
	require.NotEqual(t, [16]byte{}, info.PipelineCacheUUID, "pipelineCacheUUID of %s", info.Name)
	infos, err := vk.Devices()
	require.NoError(t, err)
	again := infos[info.Index]
	require.Equal(t, info.DriverVersion, again.DriverVersion)
	require.Equal(t, info.PipelineCacheUUID, again.PipelineCacheUUID)
	t.Logf("%s: driverVersion %#x, pipelineCacheUUID %x", info.Name, info.DriverVersion, info.PipelineCacheUUID)
}
