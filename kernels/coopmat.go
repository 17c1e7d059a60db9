package kernels

import (
	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
)

// CoopTile is one configuration of the subgroup-scope cooperative-matrix
// matmul (shaders/matmul_coopmat.comp): a BM×BN output tile per workgroup,
// K consumed BK at a time, one WM×WN tile per subgroup.
type CoopTile struct{ BM, BN, BK, WM, WN int }

// coopTiles, in order of preference. The small tile keeps many subgroups
// resident; the large one stays as the fallback for devices whose shared
// memory or chunk split rules out the first. docs/PERFORMANCE.md has the
// measurements behind the order; Options.CoopMatTile tries others.
var coopTiles = []CoopTile{
	{BM: 32, BN: 32, BK: 32, WM: 16, WN: 16},   // 4 subgroups, 5 KiB shared
	{BM: 128, BN: 128, BK: 32, WM: 64, WN: 32}, // 8 subgroups, 40 KiB
}

func (t CoopTile) subgroups() int { return (t.BM / t.WM) * (t.BN / t.WN) }

// sharedBytes mirrors the shader's two buffers of padded A and B tiles.
func (t CoopTile) sharedBytes() int {
	a := max(t.BM*(t.BK/8+1), t.BK*(t.BM/8+1))
	b := max(t.BN*(t.BK/8+1), t.BK*(t.BN/8+1))
	return 2 * (a + b) * 16
}

// coopSupport is what the device offers one dtype's cooperative matrices.
type coopSupport struct {
	shape    vk.CoopMatShape
	subgroup int
	tiles    []CoopTile
}

// coopLayout says which index of each operand is contiguous: A's k (else
// m) and B's k (else n). The cooperative kernels are specialised on it.
type coopLayout struct{ aKF, bKF bool }

func (t CoopTile) spec(c *coopSupport, l coopLayout) []uint32 {
	return []uint32{uint32(t.BM), uint32(t.BN), uint32(t.BK), uint32(t.WM), uint32(t.WN),
		uint32(t.subgroups() * c.subgroup), c.shape.M, c.shape.N, c.shape.K, b32(l.aKF), b32(l.bKF)}
}

// coopInput is a layer dtype the cooperative kernels can multiply: its
// cooperative-matrix component type.
type coopInput struct {
	d    dtype.DType
	comp vk.ComponentType
}

// coopInputs lists the dtypes whose cooperative matrices the device can
// use at all: f16 with fp16 arithmetic, bf16 with VK_KHR_shader_bfloat16's
// cooperative matrices.
func coopInputs(c *vk.Caps) []coopInput {
	var in []coopInput
	if c.Float16 {
		in = append(in, coopInput{dtype.F16, vk.ComponentF16})
	}
	if c.BFloat16CoopMat {
		in = append(in, coopInput{dtype.BF16, vk.ComponentBF16})
	}
	return in
}

// coopTiles is the subgroup-scope tile list: the override alone, or the table.
func (o Options) coopTiles() []CoopTile {
	if o.CoopMatTile != nil {
		return []CoopTile{*o.CoopMatTile}
	}
	return coopTiles
}

// probeCoopMat finds, for f16 and bf16, a subgroup-scope shape with fp32
// accumulation that divides the tiles, and the tiles the device can run.
// The kernel assumes one fixed subgroup size, so devices whose size varies
// (subgroup size control with min ≠ max) stay on the scalar path for now.
func probeCoopMat(c *vk.Caps, tiles []CoopTile) map[dtype.DType]*coopSupport {
	out := map[dtype.DType]*coopSupport{}
	if !c.CoopMat || c.SubgroupSize == 0 || (c.SubgroupSizeControl && c.MinSubgroupSize != c.MaxSubgroupSize) {
		return out
	}
	for _, in := range coopInputs(c) {
		for _, s := range c.CoopMatShapes {
			if !s.Multiplies(in.comp, vk.ComponentF32) {
				continue
			}
			sup := &coopSupport{shape: s, subgroup: int(c.SubgroupSize)}
			for _, t := range tiles {
				threads := t.subgroups() * sup.subgroup
				chunks := t.BK / 8 // per tile row; each thread stages whole chunks
				if t.WM%int(s.M) == 0 && t.WN%int(s.N) == 0 && t.BK%int(s.K) == 0 && t.BK%8 == 0 &&
					(t.BM*chunks)%threads == 0 && (t.BN*chunks)%threads == 0 && fits(c, t.sharedBytes(), threads) {
					sup.tiles = append(sup.tiles, t)
				}
			}
			if len(sup.tiles) > 0 {
				out[in.d] = sup
				break
			}
		}
	}
	return out
}

// pickCoopTile chooses the cooperative-matrix tile for an [m, n] output of
// dtype d, or reports that another kernel should run: outputs narrower
// than a subgroup tile (the [M, r] LoRA intermediates, dA and dB) waste
// most of a cooperative tile.
func (e *Dispatcher) pickCoopTile(d dtype.DType, m, n int) (CoopTile, *coopSupport, bool) {
	if !e.CoopMat(d) || m < 64 || n < 64 {
		return CoopTile{}, nil, false
	}
	sup := e.coop[d]
	return sup.tiles[0], sup, true
}
