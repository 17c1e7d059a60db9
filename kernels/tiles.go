package kernels

import "github.com/vklora/vklora/vk"

// tileShape is one configuration of the scalar tiled matmul: a BM×BN output
// tile per workgroup, K consumed BK at a time, TM×TN outputs per thread.
type tileShape struct{ BM, BN, BK, TM, TN int }

func (t tileShape) threads() int { return (t.BM / t.TM) * (t.BN / t.TN) }

// sharedBytes is the shared memory of the two padded tiles.
func (t tileShape) sharedBytes() int { return 4 * t.BK * (t.BM + 1 + t.BN + 1) }

func (t tileShape) spec() []uint32 {
	return []uint32{uint32(t.BM), uint32(t.BN), uint32(t.BK), uint32(t.TM), uint32(t.TN), uint32(t.threads())}
}

// Tile table, largest first: large problems amortise loads over more
// outputs per thread; small ones need more workgroups to fill the device.
// Larger tiles with 8×8 outputs per thread spill their 64 accumulators and
// measured slower (docs/PERFORMANCE.md); they stay out until a
// register-blocked variant is measured to win.
var tileTable = []tileShape{
	{BM: 64, BN: 64, BK: 16, TM: 4, TN: 4}, // 256 threads, 8.3 KiB
	{BM: 32, BN: 32, BK: 16, TM: 2, TN: 2}, // 256 threads, 4.2 KiB
}

// fits reports whether the device can run a workgroup of threads (along x)
// using sharedBytes of shared memory.
func fits(c *vk.Caps, sharedBytes, threads int) bool {
	return sharedBytes <= int(c.MaxSharedMemory) && threads <= int(c.MaxWorkgroupInvocations) &&
		uint32(threads) <= c.MaxWorkgroupSize[0]
}

// pickTile takes the largest tile that still gives enough workgroups.
func (e *Dispatcher) pickTile(m, n int) tileShape {
	c := e.dev.Caps()
	var last tileShape
	for i, t := range tileTable {
		if !fits(c, t.sharedBytes(), t.threads()) {
			continue
		}
		last = t
		if i == len(tileTable)-1 || ceilDiv(m, t.BM)*ceilDiv(n, t.BN) >= e.targetGroups() {
			return t
		}
	}
	return last
}

// pickSplit chooses split-K when the output has too few bm×bn tiles to
// fill the device and K is long: slices of kSplit (a multiple of bk) each.
func (e *Dispatcher) pickSplit(bm, bn, bk, m, n, k int) (splits, kSplit int) {
	tiles := ceilDiv(m, bm) * ceilDiv(n, bn)
	want := ceilDiv(e.targetGroups(), tiles)
	maxSplits := k / (8 * bk) // each slice keeps at least 8 tile steps
	if want > maxSplits {
		want = maxSplits
	}
	if want > 64 {
		want = 64
	}
	if want <= 1 {
		return 1, k
	}
	kSplit = ceilDiv(ceilDiv(k, want), bk) * bk
	return ceilDiv(k, kSplit), kSplit
}
