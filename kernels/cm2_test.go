package kernels

import (
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk/vktest"
)

// The workgroup-scope tile: the first in table order that fills the
// device, else the one with the most workgroups; for outputs of at most
// 32 columns the narrowest narrow tile that covers them; nothing for
// 33..63 columns, fewer than 64 rows, or when the path is off; with an
// NF4 B only tiles whose staged B fits. Runs on any device (the tile list is
// set by hand; nothing is dispatched).
func TestPickCM2Tile(t *testing.T) {
	f := newFixture(t)
	e := &Dispatcher{dev: f.Dev}
	big, small := CM2Tile{BM: 128, BN: 128, BK: 32, WG: 128}, CM2Tile{BM: 64, BN: 64, BK: 32, WG: 128}
	e.cm2 = map[dtype.DType][]CM2Tile{dtype.BF16: {big, small}}
	e.cm2Narrow = nil
	target := e.targetGroups()
	side := func(tile, groups int) int { // an m = n whose tiles give about groups workgroups
		s := 1
		for s*s < groups {
			s++
		}
		return s * tile
	}
	fills := side(128, target) // 128×128 tiles fill the device
	got, ok := e.pickCM2Tile(dtype.BF16, fills, fills, false)
	require.True(t, ok)
	require.Equal(t, big, got)
	few := max(64, side(128, target)/2) // 128×128 tiles leave it idle; 64×64 ones give 4× more
	got, ok = e.pickCM2Tile(dtype.BF16, few, few, false)
	require.True(t, ok)
	require.Equal(t, small, got, "m = n = %d, target %d workgroups", few, target)
	_, ok = e.pickCM2Tile(dtype.BF16, 4096, 16, false)
	require.False(t, ok, "no narrow tiles: a rank-r output goes to another kernel")
	n16, n32 := CM2Tile{BM: 128, BN: 16, BK: 32, WG: 128}, CM2Tile{BM: 128, BN: 32, BK: 32, WG: 128}
	e.cm2Narrow = map[dtype.DType][]CM2Tile{dtype.BF16: {n16, n32}}
	for _, c := range []struct {
		m, n int
		want CM2Tile
		ok   bool
	}{{4096, 16, n16, true}, {4096, 5, n16, true}, {4096, 17, n32, true}, {4096, 32, n32, true}, {4096, 33, CM2Tile{}, false}, {63, 16, CM2Tile{}, false}} {
		got, ok := e.pickCM2Tile(dtype.BF16, c.m, c.n, false)
		require.Equal(t, c.ok, ok, "[%d, %d]", c.m, c.n)
		require.Equal(t, c.want, got, "[%d, %d]", c.m, c.n)
	}
	huge := CM2Tile{BM: 256, BN: 256, BK: 256, WG: 128} // its NF4 B tile alone is 130 KiB
	big.Unroll = 8
	require.False(t, huge.nf4Fits(f.Dev.Caps()))
	e.cm2[dtype.BF16] = []CM2Tile{huge, big}
	e.cm2NF4 = nf4CM2Tiles(f.Dev.Caps(), e.cm2)
	hugeFills := side(256, target)
	got, ok = e.pickCM2Tile(dtype.BF16, hugeFills, hugeFills, true)
	require.True(t, ok)
	require.Equal(t, CM2Tile{BM: 128, BN: 128, BK: 32, WG: 128}, got, "an NF4 B skips tiles whose staged B tile does not fit, and runs rolled")
	got, _ = e.pickCM2Tile(dtype.BF16, hugeFills, hugeFills, false)
	require.Equal(t, huge, got, "a dense B takes any listed tile")
	_, ok = e.pickCM2Tile(dtype.F16, 4096, 4096, false)
	require.False(t, ok, "no tiles for f16")
	e.opt.DisableCoopMat2 = true
	_, ok = e.pickCM2Tile(dtype.BF16, 4096, 4096, false)
	require.False(t, ok)
}

// Tile overrides that no kernel could take are refused when the dispatcher
// is made, naming the option: zero or negative sizes, an unroll outside
// [0, maxCM2Unroll], a subgroup tile that does not divide, a negative slab.
func TestOptionsRefused(t *testing.T) {
	f := newFixture(t)
	for _, o := range []Options{
		{CoopMat2Tile: &CM2Tile{BM: 128, BN: 128, BK: 32, WG: 0}},
		{CoopMat2Tile: &CM2Tile{BM: 128, BN: 128, BK: 32, WG: 128, Unroll: -1}},
		{CoopMat2Tile: &CM2Tile{BM: 128, BN: 128, BK: 32, WG: 128, Unroll: maxCM2Unroll + 1}},
		{CoopMatTile: &CoopTile{BM: 128, BN: 128, BK: 32, WM: 48, WN: 32}},
		{NF4SlabBytes: -1},
		{CoopMat2Unroll: -1},
		{CoopMat2Unroll: maxCM2Unroll + 1},
	} {
		_, err := New(f.Dev, o)
		require.ErrorIs(t, err, ErrBadInput, "%+v", o)
		require.ErrorContains(t, err, "options")
	}
	for _, u := range []int{0, 1, maxCM2Unroll} {
		_, err := New(f.Dev, Options{CoopMat2Tile: &CM2Tile{BM: 128, BN: 128, BK: 32, WG: 128, Unroll: u}})
		require.NoError(t, err, "unroll %d", u)
		_, err = New(f.Dev, Options{CoopMat2Unroll: u})
		require.NoError(t, err, "CoopMat2Unroll %d", u)
	}
}

// CoopMat2Unroll replaces the unroll of the tiles the table unrolls and
// leaves the rolled ones rolled; a forced tile keeps its own.
func TestCoopMat2UnrollOption(t *testing.T) {
	require.Equal(t, cm2Tiles, Options{}.cm2Tiles())
	got := Options{CoopMat2Unroll: 16}.cm2Tiles()
	require.Len(t, got, len(cm2Tiles))
	unrolled := 0
	for i, tile := range got {
		want := cm2Tiles[i]
		if want.Unroll > 1 {
			want.Unroll = 16
			unrolled++
		}
		require.Equal(t, want, tile, "tile %d", i)
	}
	require.NotZero(t, unrolled, "the table unrolls some tile")
	require.NotEqual(t, 16, cm2Tiles[0].Unroll, "the table itself is unchanged")
	forced := CM2Tile{BM: 64, BN: 64, BK: 32, WG: 128, Unroll: 4}
	require.Equal(t, []CM2Tile{forced}, Options{CoopMat2Tile: &forced, CoopMat2Unroll: 16}.cm2Tiles())
}

// Every workgroup-scope tile of the table computes the right product
// where its loops differ: in-range tiles whose K ends in a partial step
// (unclamped steps, then one clamped), edge tiles (clamped throughout),
// and a K shallower than one step. Only where the device has the kernel.
func TestCoopMat2EveryTile(t *testing.T) {
	const d = dtype.BF16
	base := newFixture(t)
	if !base.eng.CoopMat2(d) {
		if os.Getenv(requireCoopMat2Env) == "1" {
			t.Fatalf("%s=1 but %s has no %s workgroup-scope cooperative matrices", requireCoopMat2Env, base.Dev.Info().Name, d)
		}
		t.Skipf("%s has no %s workgroup-scope cooperative matrices", base.Dev.Info().Name, d)
	}
	for _, tile := range cm2Tiles {
		t.Run(fmt.Sprintf("%dx%dx%d-u%d", tile.BM, tile.BN, tile.BK, tile.Unroll), func(t *testing.T) {
			f := newFixtureWith(t, Options{CoopMat2Tile: &tile})
			for _, s := range [][3]int{
				{4*tile.BM + 3, 2*tile.BN + 5, tile.BK*(tile.Unroll+1) + 40}, // K tail of 40 on in-range tiles, edge rows and columns
				{5 * tile.BM, tile.BN, 3*tile.BK + 8},                        // every tile in range, five rows of tiles
				{2*tile.BM + 1, tile.BN, 24},                                 // shallower than one step
			} {
				m, n, k := s[0], s[1], s[2]
				t.Run(fmt.Sprintf("%dx%dx%d", m, n, k), func(t *testing.T) {
					f := f.in(t)
					a, b, c0 := f.Random(d, m*k, 1), f.Random(d, n*k, 1), f.Random(d, m*n, 1)
					A, B := Dense(f.Upload(d, a, m, k)), Dense(f.Upload(d, b, n, k)).T()
					c := f.Upload(d, c0, m, n)
					f.requireKernel(Gemm{C: c, A: A, B: B}, "_cm2")
					rec := f.Recorder()
					require.NoError(t, f.eng.MatmulTo(rec, c, A, B, 0.37, -1.5))
					require.NoError(t, rec.Submit())
					want := append([]float64(nil), c0...)
					ref.MatmulAcc(want, a, b, m, n, k, false, true, 0.37, -1.5)
					vktest.ExpectClose(t, "C", f.Download(c), ref.RoundTo(d, want), n, ref.Tolerance(d).Product)
				})
			}
		})
	}
}
