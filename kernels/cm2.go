package kernels

import (
	"slices"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
)

// CM2Tile is one configuration of the workgroup-scope matmul
// (shaders/matmul_cm2.comp): a BM×BN output tile per workgroup of WG
// invocations, K consumed BK at a time. The driver stages the tiles in
// shared memory itself, so there is no subgroup tiling to choose. Unroll
// is the number of K steps the in-range loop unrolls (0 means 1).
type CM2Tile struct{ BM, BN, BK, WG, Unroll int }

// cm2Tiles, in order of preference; each must match a flexible-dimension
// configuration the device reports (granularities and invocation count).
// The large tile amortises staging over the most outputs; the smaller ones
// keep mid-sized outputs spread over enough workgroups. The two large ones
// unroll eight K steps: on the H200 that took bf16 8192³ from 195 to 261
// TFLOP/s at 128×256×64 and from 196 to 251 at 128×128×32
// (docs/PERFORMANCE.md). Sixteen steps were 1–5% faster in lone products
// but 1–2% slower in llama3-8b's layers, so eight stay (CoopMat2Unroll
// times others). The 64×64 tile serves small, shallow products
// (qwen2.5-0.5b's), which ran 5% slower with the unrolled tiles, so it
// stays rolled until it is measured on its own. The driver stages the
// 128×256×64 tile in 47 of the 48 KiB a workgroup may use; it has been
// built on the H200 only. llama.cpp's workgroup-scope matmul runs the same
// tile by default on NVIDIA GPUs, which suggests other drivers fit it too.
// A 128×128 tile with 256 invocations measured slower than with 128, so
// it is not listed.
var cm2Tiles = []CM2Tile{
	{BM: 128, BN: 256, BK: 64, WG: 256, Unroll: 8},
	{BM: 128, BN: 128, BK: 32, WG: 128, Unroll: 8},
	{BM: 64, BN: 64, BK: 32, WG: 128},
}

// cm2NarrowTiles serve products whose output has at most narrowMax
// columns and at least 64 rows (X·Aᵀ and G·B into [M, r] with 16-bit
// operands), narrowest first: the tile's BN is the smallest that covers N.
var cm2NarrowTiles = []CM2Tile{
	{BM: 128, BN: 16, BK: 32, WG: 128},
	{BM: 128, BN: 32, BK: 32, WG: 128},
}

// nf4SharedBytes mirrors matmul_cm2.comp's NF4 B tile: padded uvec4 rows
// in either memory order (the larger of the two).
func (t CM2Tile) nf4SharedBytes() int {
	return 16 * max(t.BN*(t.BK/8+1), t.BK*(t.BN/8+1))
}

// nf4Fits reports whether the NF4 variant's staged B tile fits beside
// what the driver stages for A (a BM×BK tile of 16-bit values) and keeps
// for itself. The dense variants need no such check: the driver stages
// both of their tiles, and every listed tile compiles.
func (t CM2Tile) nf4Fits(c *vk.Caps) bool {
	return fits(c, t.nf4SharedBytes()+2*t.BM*t.BK+int(c.CoopMat2ReservedShared), t.WG)
}

func (t CM2Tile) spec(l coopLayout) []uint32 {
	return []uint32{uint32(t.BM), uint32(t.BN), uint32(t.BK), uint32(t.WG), b32(l.aKF), b32(l.bKF), uint32(max(t.Unroll, 1))}
}

// cm2Spec is the specialization of matmul_cm2.comp for tile t of dtype d
// in layout l with segs K segments: the tile's constants, SEGS, and BK2,
// the fused term's K step.
func (e *Dispatcher) cm2Spec(d dtype.DType, t CM2Tile, l coopLayout, segs int) []uint32 {
	return append(t.spec(l), uint32(segs), uint32(cm2KStep(e.dev.Caps(), d, t)))
}

// cm2KStep is the fused LoRA term's K step for tile t of dtype d: the
// finest K granularity of the device configurations that run t (its rank
// is small, so a BK-deep step would mostly multiply clamped zeros), else
// BK.
func cm2KStep(c *vk.Caps, d dtype.DType, t CM2Tile) int {
	step := t.BK
	for _, in := range coopInputs(c) {
		if in.d != d {
			continue
		}
		for _, s := range c.CoopMat2Shapes {
			g := int(s.KGranularity)
			if s.Multiplies(in.comp, vk.ComponentF32) && int(s.Invocations) == t.WG &&
				divides(g, t.BK) && divides(int(s.MGranularity), t.BM) && divides(int(s.NGranularity), t.BN) {
				step = min(step, g)
			}
		}
	}
	return step
}

// divides reports whether g is a positive divisor of n.
func divides(g, n int) bool { return g > 0 && n%g == 0 }

// cm2Tiles is the workgroup-scope tile list: the override alone, or the
// table, with CoopMat2Unroll in place of its unrolls.
func (o Options) cm2Tiles() []CM2Tile {
	if o.CoopMat2Tile != nil {
		return []CM2Tile{*o.CoopMat2Tile}
	}
	if o.CoopMat2Unroll == 0 {
		return cm2Tiles
	}
	out := slices.Clone(cm2Tiles)
	for i := range out {
		if out[i].Unroll > 1 {
			out[i].Unroll = o.CoopMat2Unroll
		}
	}
	return out
}

// probeCoopMat2 finds, for f16 and bf16, the workgroup-scope tiles with
// fp32 accumulation the device runs: each tile's dimensions must be
// multiples of a reported configuration's granularities and its workgroup
// that configuration's invocation count.
func probeCoopMat2(c *vk.Caps, tiles []CM2Tile) map[dtype.DType][]CM2Tile {
	out := map[dtype.DType][]CM2Tile{}
	if !c.CoopMat2 || !c.CoopMat2Flexible {
		return out
	}
	for _, in := range coopInputs(c) {
		for _, t := range tiles {
			if c.CoopMat2MaxWorkgroupSize > 0 && t.WG > int(c.CoopMat2MaxWorkgroupSize) {
				continue
			}
			if c.CoopMat2MaxDimension > 0 && max(t.BM, t.BN, t.BK) > int(c.CoopMat2MaxDimension) {
				continue
			}
			if !fits(c, int(c.CoopMat2ReservedShared), t.WG) {
				continue
			}
			for _, s := range c.CoopMat2Shapes {
				if s.Multiplies(in.comp, vk.ComponentF32) && int(s.Invocations) == t.WG &&
					t.BM%int(s.MGranularity) == 0 && t.BN%int(s.NGranularity) == 0 && t.BK%int(s.KGranularity) == 0 {
					out[in.d] = append(out[in.d], t)
					break
				}
			}
		}
	}
	return out
}

// nf4CM2Tiles are the tiles an NF4 B takes, of those the device runs: the
// ones whose staged B fits, rolled (the NF4 variant decodes each step's B
// tile between two barriers, and only its rolled loop has run on a GPU).
func nf4CM2Tiles(c *vk.Caps, tiles map[dtype.DType][]CM2Tile) map[dtype.DType][]CM2Tile {
	out := map[dtype.DType][]CM2Tile{}
	for d, ts := range tiles {
		for _, t := range ts {
			if t.nf4Fits(c) {
				t.Unroll = 0
				out[d] = append(out[d], t)
			}
		}
	}
	return out
}

// pickCM2Tile chooses the workgroup-scope tile for an [m, n] output of
// dtype d (with an NF4 B when nf4, which takes only tiles whose staged B
// fits, rolled), or reports that another kernel should run. An output of at
// most narrowMax columns takes the narrowest cm2NarrowTiles tile that
// covers them; one of fewer than 64 rows or other columns another kernel.
// Like the scalar kernel's pickTile it takes the first tile (in table
// order) that gives enough workgroups to fill the device, else the one
// giving the most: a small output in large tiles leaves most
// multiprocessors idle.
func (e *Dispatcher) pickCM2Tile(d dtype.DType, m, n int, nf4 bool) (CM2Tile, bool) {
	ts := e.cm2[d]
	if nf4 {
		ts = e.cm2NF4[d]
	}
	if !e.CoopMat2(d) || m < 64 || len(ts) == 0 {
		return CM2Tile{}, false
	}
	if n <= narrowMax {
		for _, t := range e.cm2Narrow[d] {
			if t.BN >= n {
				return t, true
			}
		}
		return CM2Tile{}, false
	}
	if n < 64 {
		return CM2Tile{}, false
	}
	best, most := ts[0], 0
	for _, t := range ts {
		groups := ceilDiv(m, t.BM) * ceilDiv(n, t.BN)
		if groups >= e.targetGroups() {
			return t, true
		}
		if groups > most {
			best, most = t, groups
		}
	}
	return best, true
}
