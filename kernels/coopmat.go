package kernels

import (
	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
)

// CoopTile is one configuration of the subgroup-scope cooperative-matrix
// matmul (shaders/matmul_coopmat.comp): a BM×BN output tile per workgroup,
// K consumed BK at a time, one WM×WN tile per subgroup.
type CoopTile struct {
	BM, BN, BK, WM, WN int
	// Tuning knobs, zero by default: OneBuf stages one tile buffer even
	// where two fit (two barriers per K step instead of one), and
	// NoPrefetch issues the next tile's global loads after the current
	// tile's multiplies instead of before (fewer registers live across
	// them, so more workgroups may be resident to hide the latency).
	OneBuf, NoPrefetch bool
}

// coopConfig is a subgroup-scope tile in units of the device's matrix
// shape TM×TN×TK: SGM×SGN subgroups, each holding FM×FN accumulators (one
// of shaders.CoopFrags), K consumed BK at a time. The same rule fits every
// vendor's shape: with 16×16×16 the first is a 128×128 tile of four 64×64
// subgroup tiles, with lavapipe's 8×8×8 a 64×64 one.
type coopConfig struct{ SGM, SGN, FM, FN, BK int }

// coopConfigs, in order of preference (docs/PERFORMANCE.md has the
// measurements). Sixteen subgroups of 4×2 accumulators on a 256×128 tile
// (at 16×16×16) come first: at about 125 registers per invocation the
// many resident subgroups hide the barriers, and two buffers do not fit
// 48 KiB, so it is single-buffered. Then 128×128 tiles in eight subgroups,
// with a short K step (fewer registers) before the longer one, four
// subgroups of 4×4 (about 220 registers), and a small grid that gives
// small outputs more workgroups. pickCoopTile takes the first that fills
// the device.
var coopConfigs = []coopConfig{
	{SGM: 4, SGN: 4, FM: 4, FN: 2, BK: 32},
	{SGM: 2, SGN: 4, FM: 4, FN: 2, BK: 16},
	{SGM: 2, SGN: 4, FM: 4, FN: 2, BK: 32},
	{SGM: 4, SGN: 2, FM: 2, FN: 4, BK: 32},
	{SGM: 2, SGN: 2, FM: 4, FN: 4, BK: 32},
	{SGM: 2, SGN: 2, FM: 2, FN: 2, BK: 32},
}

// tile is c's tile for matrix shape s.
func (c coopConfig) tile(s vk.CoopMatShape) CoopTile {
	wm, wn := c.FM*int(s.M), c.FN*int(s.N)
	return CoopTile{BM: c.SGM * wm, BN: c.SGN * wn, BK: c.BK, WM: wm, WN: wn}
}

func (t CoopTile) subgroups() int { return (t.BM / t.WM) * (t.BN / t.WN) }

// frags is the tile's fragment grid for shape s, and whether the kernel is
// built for it (shaders.CoopFrags).
func (t CoopTile) frags(s vk.CoopMatShape) (fm, fn uint8, ok bool) {
	if t.WM%int(s.M) != 0 || t.WN%int(s.N) != 0 {
		return 0, 0, false
	}
	fm, fn = uint8(t.WM/int(s.M)), uint8(t.WN/int(s.N))
	for _, f := range shaders.CoopFrags {
		if f == [2]uint8{fm, fn} {
			return fm, fn, true
		}
	}
	return 0, 0, false
}

// bufBytes mirrors one of the shader's buffers of padded A and B tiles.
func (t CoopTile) bufBytes() int {
	a := max(t.BM*(t.BK/8+1), t.BK*(t.BM/8+1))
	b := max(t.BN*(t.BK/8+1), t.BK*(t.BN/8+1))
	return (a + b) * 16
}

// twoBufs reports whether the shader double-buffers the tile on a device
// with maxShared bytes of shared memory: where two buffers fit.
func (t CoopTile) twoBufs(maxShared int) bool { return !t.OneBuf && 2*t.bufBytes() <= maxShared }

// sharedBytes is the shader's shared memory on such a device.
func (t CoopTile) sharedBytes(maxShared int) int {
	if t.twoBufs(maxShared) {
		return 2 * t.bufBytes()
	}
	return t.bufBytes()
}

// coopSupport is what the device offers one dtype's cooperative matrices.
type coopSupport struct {
	shape     vk.CoopMatShape
	subgroup  int
	required  uint32 // subgroup size the pipelines require (0: the device has one size)
	maxShared int
	tiles     []CoopTile
}

// coopLayout says which index of each operand is contiguous: A's k (else
// m) and B's k (else n). The cooperative kernels are specialised on it.
type coopLayout struct{ aKF, bKF bool }

func (t CoopTile) spec(c *coopSupport, l coopLayout) []uint32 {
	return []uint32{uint32(t.BM), uint32(t.BN), uint32(t.BK), uint32(t.WM), uint32(t.WN),
		uint32(t.subgroups() * c.subgroup), c.shape.M, c.shape.N, c.shape.K, b32(l.aKF), b32(l.bKF),
		b32(t.twoBufs(c.maxShared)), b32(!t.NoPrefetch)}
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

// coopTiles is the subgroup-scope tile list for shape s: the override
// alone, or the table's configurations at that shape.
func (o Options) coopTiles(s vk.CoopMatShape) []CoopTile {
	if o.CoopMatTile != nil {
		return []CoopTile{*o.CoopMatTile}
	}
	ts := make([]CoopTile, len(coopConfigs))
	for i, c := range coopConfigs {
		ts[i] = c.tile(s)
	}
	return ts
}

// probeCoopMat finds, for f16 and bf16, a subgroup-scope shape with fp32
// accumulation that divides the tiles, and the tiles the device can run.
// The kernel's workgroup is a count of subgroups, so it needs to know the
// subgroup size: a device whose size varies (AMD's wave32/wave64, Intel's
// 8 to 32) runs it at its default size, required through subgroup size
// control; one that varies without that control stays off this kernel.
func probeCoopMat(c *vk.Caps, o Options) map[dtype.DType]*coopSupport {
	out := map[dtype.DType]*coopSupport{}
	varies := c.MinSubgroupSize != c.MaxSubgroupSize
	if !c.CoopMat || c.SubgroupSize == 0 || (varies && !c.SubgroupSizeControl) {
		return out
	}
	var required uint32
	if varies {
		required = c.SubgroupSize
	}
	maxShared := int(c.MaxSharedMemory)
	for _, in := range coopInputs(c) {
		for _, s := range c.CoopMatShapes {
			if !s.Multiplies(in.comp, vk.ComponentF32) {
				continue
			}
			if f := o.CoopMatShape; f != nil && (s.M != uint32(f[0]) || s.N != uint32(f[1]) || s.K != uint32(f[2])) {
				continue
			}
			sup := &coopSupport{shape: s, subgroup: int(c.SubgroupSize), required: required, maxShared: maxShared}
			for _, t := range o.coopTiles(s) {
				threads := t.subgroups() * sup.subgroup
				_, _, built := t.frags(s)
				// Each invocation stages whole 8-element chunks; the shader
				// guards a last partial round of them.
				if built && t.BK%int(s.K) == 0 && t.BK%8 == 0 &&
					t.sharedBytes(maxShared) <= maxShared && fits(c, t.sharedBytes(maxShared), threads) &&
					scratchFits(t, s, maxShared) {
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
// than 64 (the [M, r] LoRA intermediates, dA and dB) waste most of a
// cooperative tile. Like pickCM2Tile it takes the first tile that gives
// enough workgroups to fill the device, else the one giving the most.
func (e *Dispatcher) pickCoopTile(d dtype.DType, m, n int) (CoopTile, *coopSupport, bool) {
	if !e.CoopMat(d) || m < 64 || n < 64 {
		return CoopTile{}, nil, false
	}
	sup := e.coop[d]
	best, most := sup.tiles[0], 0
	for _, t := range sup.tiles {
		groups := ceilDiv(m, t.BM) * ceilDiv(n, t.BN)
		if groups >= e.targetGroups() {
			return t, sup, true
		}
		if groups > most {
			best, most = t, groups
		}
	}
	return best, sup, true
}

// scratchFits reports whether the epilogue's per-subgroup TM×TN f32
// scratch, which reuses the tile memory, fits in it.
func scratchFits(t CoopTile, s vk.CoopMatShape, maxShared int) bool {
	return t.subgroups()*int(s.M*s.N)*4 <= t.sharedBytes(maxShared)
}
