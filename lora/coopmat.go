package lora

import (
	"os"
	"strconv"
	"strings"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
)

// coopTile is one configuration of the cooperative-matrix matmul
// (shaders/matmul_coopmat.comp): a BM×BN output tile per workgroup, K
// consumed BK at a time, one WM×WN tile per subgroup.
type coopTile struct{ BM, BN, BK, WM, WN int }

// coopTiles, in order of preference. Measured on an H200 (bf16 8192³,
// docs/PERFORMANCE.md): 32×32 tiles with one 16×16 accumulator per
// subgroup ran at 42.7 TFLOP/s, ahead of every larger tile (128×128 with
// 64×32 per subgroup 36.2, 64×64 33.4, 256×128 36.2): on that driver more
// resident subgroups beat more reuse per subgroup. The larger tile stays as
// the fallback for devices whose shared memory or chunk split rules out the
// first; VKLORA_COOPMAT_TILE tries others.
var coopTiles = []coopTile{
	{BM: 32, BN: 32, BK: 32, WM: 16, WN: 16},   // 4 subgroups, 5 KiB shared
	{BM: 128, BN: 128, BK: 32, WM: 64, WN: 32}, // 8 subgroups, 40 KiB
}

func (t coopTile) subgroups() int { return (t.BM / t.WM) * (t.BN / t.WN) }

// sharedBytes mirrors the shader's two buffers of padded A and B tiles.
func (t coopTile) sharedBytes() int {
	a := max(t.BM*(t.BK/8+1), t.BK*(t.BM/8+1))
	b := max(t.BN*(t.BK/8+1), t.BK*(t.BN/8+1))
	return 2 * (a + b) * 16
}

// coopSupport is what the device offers one dtype's cooperative matrices.
type coopSupport struct {
	shape    vk.CoopMatShape
	subgroup int
	tiles    []coopTile
}

// coopLayout says which index of each operand is contiguous: A's k (else
// m) and B's k (else n). The kernel is specialised on it.
type coopLayout struct{ aKF, bKF bool }

func b32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

func (t coopTile) spec(c *coopSupport, l coopLayout) []uint32 {
	return []uint32{uint32(t.BM), uint32(t.BN), uint32(t.BK), uint32(t.WM), uint32(t.WN),
		uint32(t.subgroups() * c.subgroup), c.shape.M, c.shape.N, c.shape.K, b32(l.aKF), b32(l.bKF)}
}

// DisableCoopMatEnv names the environment variable that, set to 1, keeps
// every engine on the scalar kernels.
const DisableCoopMatEnv = "VKLORA_DISABLE_COOPMAT"

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

// probeCoopMat finds, for f16 and bf16, a subgroup-scope shape with fp32
// accumulation that divides the tiles, and the tiles the device can run.
// The kernel assumes one fixed subgroup size, so devices whose size varies
// (subgroup size control with min ≠ max) stay on the scalar path for now.
func probeCoopMat(c *vk.Caps) map[dtype.DType]*coopSupport {
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
			for _, t := range tileCandidates() {
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

// CoopMat reports whether matmuls of dtype d run on cooperative matrices.
func (e *Engine) CoopMat(d dtype.DType) bool { return !e.noCoop && e.coop[d] != nil }

// SetCoopMat turns the cooperative-matrix kernels on or off (on only takes
// effect where the device supports them). Tests use it to compare paths.
func (e *Engine) SetCoopMat(on bool) { e.noCoop = !on }

// pickCoopTile chooses the cooperative-matrix tile for an [m, n] output of
// dtype d, or reports that the scalar kernel should run: outputs narrower
// than a subgroup tile (the [M, r] LoRA intermediates, dA and dB) waste
// most of a cooperative tile and stay scalar.
func (e *Engine) pickCoopTile(d dtype.DType, m, n int) (coopTile, *coopSupport, bool) {
	sup := e.coop[d]
	if e.noCoop || sup == nil || m < 64 || n < 64 {
		return coopTile{}, nil, false
	}
	return sup.tiles[0], sup, true
}

func coopDisabledByEnv() bool { return os.Getenv(DisableCoopMatEnv) == "1" }

// CoopMatTileEnv names a tuning knob: "BM,BN,BK,WM,WN" makes that the only
// cooperative-matrix tile (it must still fit the device, or the scalar path
// runs). For measuring tile shapes with lorabench; not for production use.
const CoopMatTileEnv = "VKLORA_COOPMAT_TILE"

func tileCandidates() []coopTile {
	var t coopTile
	switch set, ok := tileFromEnv(CoopMatTileEnv, &t.BM, &t.BN, &t.BK, &t.WM, &t.WN); {
	case !set:
		return coopTiles
	case !ok || t.BM%t.WM != 0 || t.BN%t.WN != 0 || t.BM%8 != 0 || t.BN%8 != 0:
		return nil
	}
	return []coopTile{t}
}

// tileFromEnv reads a tuning knob "a,b,c,..." of len(fields) positive
// integers from the environment variable name into fields. set is false
// when the variable is empty; ok is false when it is malformed, and then
// no tile is taken at all (the kernel is not used).
func tileFromEnv(name string, fields ...*int) (set, ok bool) {
	v := os.Getenv(name)
	if v == "" {
		return false, false
	}
	parts := strings.Split(v, ",")
	if len(parts) != len(fields) {
		return true, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n <= 0 {
			return true, false
		}
		*fields[i] = n
	}
	return true, true
}
