package kernels

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
)

// caps of an invented device with f16 16×16×16 subgroup-scope matrices,
// 48 KiB of shared memory and subgroups of min..max with default def.
func coopCaps(min, max, def uint32, control bool) *vk.Caps {
	return &vk.Caps{CoopMat: true, Float16: true, SubgroupSize: def, MinSubgroupSize: min, MaxSubgroupSize: max,
		SubgroupSizeControl: control, MaxSharedMemory: 48 << 10, MaxWorkgroupInvocations: 1024,
		MaxWorkgroupSize: [3]uint32{1024, 1024, 64},
		CoopMatShapes: []vk.CoopMatShape{{M: 16, N: 16, K: 16, A: vk.ComponentF16, B: vk.ComponentF16,
			C: vk.ComponentF32, Result: vk.ComponentF32, SubgroupScope: true}}}
}

// The probe's tiles follow the table at the device's shape; a device whose
// subgroup size varies runs the kernel at its default size, required
// through subgroup size control, and one without that control not at all.
func TestProbeCoopMatSubgroupSizes(t *testing.T) {
	fixed := probeCoopMat(coopCaps(32, 32, 32, false), Options{})[dtype.F16]
	require.NotNil(t, fixed)
	require.Zero(t, fixed.required)
	require.Equal(t, CoopTile{BM: 256, BN: 128, BK: 32, WM: 64, WN: 32}, fixed.tiles[0])
	require.False(t, fixed.tiles[0].twoBufs(fixed.maxShared), "256×128×32 is single-buffered in 48 KiB")
	require.Len(t, fixed.tiles, len(coopConfigs))

	amd := probeCoopMat(coopCaps(32, 64, 64, true), Options{})[dtype.F16]
	require.NotNil(t, amd)
	require.Equal(t, uint32(64), amd.required)
	require.Equal(t, 64, amd.subgroup)
	for _, tl := range amd.tiles { // 8 subgroups of 64 exceed no limit here; shared memory still bounds
		require.LessOrEqual(t, tl.sharedBytes(48<<10), 48<<10)
	}

	require.Nil(t, probeCoopMat(coopCaps(8, 32, 16, false), Options{})[dtype.F16],
		"a varying subgroup size without size control")
	require.Nil(t, probeCoopMat(coopCaps(32, 32, 32, false), Options{})[dtype.BF16], "no bf16 shape")

	// An override outside the built grids (3 fragments) is refused.
	bad := CoopTile{BM: 96, BN: 64, BK: 32, WM: 48, WN: 32}
	require.Nil(t, probeCoopMat(coopCaps(32, 32, 32, false), Options{CoopMatTile: &bad})[dtype.F16])
}
