package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/lora"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// The engine switches: unset is the default; well-formed values become
// options; anything else (wrong count, zero, not a number, a switch other
// than 0/1) is an error naming the variable.
func TestEngineOptionsFromEnv(t *testing.T) {
	o, err := engineOptions(envOf(nil))
	require.NoError(t, err)
	require.Equal(t, lora.Options{}, o)

	o, err = engineOptions(envOf(map[string]string{envDisableCoopMat2: "1", envDisableNarrow: "0",
		envCoopMat2Tile: "64, 128,32,256", envCoopMatTile: "64,64,32,32,32", envCoopMatShape: "16,8,16"}))
	require.NoError(t, err)
	require.True(t, o.DisableCoopMat2)
	require.False(t, o.DisableNarrow || o.DisableCoopMat)
	require.Equal(t, &lora.CM2Tile{BM: 64, BN: 128, BK: 32, WG: 256}, o.CoopMat2Tile)
	require.Equal(t, &lora.CoopTile{BM: 64, BN: 64, BK: 32, WM: 32, WN: 32}, o.CoopMatTile)
	require.Equal(t, &[3]int{16, 8, 16}, o.CoopMatShape)

	o, err = engineOptions(envOf(map[string]string{envCoopMat2Tile: "128,256,64,256,8"}))
	require.NoError(t, err)
	require.Equal(t, &lora.CM2Tile{BM: 128, BN: 256, BK: 64, WG: 256, Unroll: 8}, o.CoopMat2Tile)

	o, err = engineOptions(envOf(map[string]string{envCoopMat2Unroll: "16"}))
	require.NoError(t, err)
	require.Equal(t, lora.Options{CoopMat2Unroll: 16}, o)

	for name, bad := range map[string][]string{
		envCoopMat2Tile:   {"64,128,32", "64,128,32,256,1,1", "64,128,32,256,0", "64,0,32,128", "64,x,32,128"},
		envCoopMatTile:    {"0,64,32,32,32", "64,64,32,32"},
		envDisableCoopMat: {"yes", "2"},
		envCoopMatShape:   {"16x16x16", "16,16"},
		envCoopMat2Unroll: {"0", "-8", "8,16", "x"},
	} {
		for _, v := range bad {
			_, err := engineOptions(envOf(map[string]string{name: v}))
			require.ErrorContains(t, err, name, v)
		}
	}
}
