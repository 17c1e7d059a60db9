package lora

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
)

// The workgroup-scope tile: the first in table order that fills the
// device, else the one with the most workgroups; nothing for narrow
// outputs or when the path is off. Runs on any device (the tile list is
// set by hand; nothing is dispatched).
func TestPickCM2Tile(t *testing.T) {
	f := newFixture(t)
	e := *f.eng
	e.noCoop, e.noCM2 = false, false
	big, small := cm2Tile{BM: 128, BN: 128, BK: 32, WG: 128}, cm2Tile{BM: 64, BN: 64, BK: 32, WG: 128}
	e.cm2 = map[dtype.DType][]cm2Tile{dtype.BF16: {big, small}}
	target := e.targetGroups()
	side := func(tile, groups int) int { // an m = n whose tiles give about groups workgroups
		s := 1
		for s*s < groups {
			s++
		}
		return s * tile
	}
	fills := side(128, target) // 128×128 tiles fill the device
	got, ok := e.pickCM2Tile(dtype.BF16, fills, fills)
	require.True(t, ok)
	require.Equal(t, big, got)
	few := max(64, side(128, target)/2) // 128×128 tiles leave it idle; 64×64 ones give 4× more
	got, ok = e.pickCM2Tile(dtype.BF16, few, few)
	require.True(t, ok)
	require.Equal(t, small, got, "m = n = %d, target %d workgroups", few, target)
	_, ok = e.pickCM2Tile(dtype.BF16, 4096, 16)
	require.False(t, ok, "a rank-r output stays off the cooperative kernels")
	_, ok = e.pickCM2Tile(dtype.F16, 4096, 4096)
	require.False(t, ok, "no tiles for f16")
	e.noCM2 = true
	_, ok = e.pickCM2Tile(dtype.BF16, 4096, 4096)
	require.False(t, ok)
}
