package kernels

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
)

// ErrBadInput marks errors caused by the caller's arguments (shapes, dtypes,
// nil or released tensors, non-finite scales). The dispatcher stays usable.
// Package lora's ErrBadInput is this value.
var ErrBadInput = errors.New("bad input")

// Options switch kernel paths off and override tile choices. The zero value
// is the default: every path the device supports, tiles from the tables.
// They exist to compare paths and to measure tiles (cmd/lorabench reads
// them from VKLORA_* variables); the library never reads the environment.
type Options struct {
	// DisableCoopMat keeps every product on the scalar and narrow kernels.
	DisableCoopMat bool
	// DisableCoopMat2 skips VK_NV_cooperative_matrix2 (the subgroup-scope
	// kernel or the scalar one runs instead).
	DisableCoopMat2 bool
	// DisableNarrow sends the rank-r products to the tiled kernels.
	DisableNarrow bool
	// DisableSegments records a product with K segments (Gemm.Segs) as
	// one product after another even where the workgroup-scope kernel
	// could walk them in one dispatch.
	DisableSegments bool
	// CoopMatTile, when set, is the only subgroup-scope tile tried: a tile
	// the device cannot run leaves that kernel unused.
	CoopMatTile *CoopTile
	// CoopMat2Tile, when set, is the only workgroup-scope tile tried, with
	// the same rule.
	CoopMat2Tile *CM2Tile
	// CoopMat2Unroll, when positive, replaces the K-step unroll of the
	// workgroup-scope tiles the table unrolls (1 rolls them); the tiles it
	// keeps rolled stay rolled. For timing one unroll against another
	// across whole layers, which one forced tile (CoopMat2Tile) cannot.
	CoopMat2Unroll int
	// CoopMatShape, when set, is the only subgroup-scope matrix shape
	// (M, N, K) tried, of those the device reports with fp32 accumulation;
	// by default the first reported one serves. For testing and timing
	// every shape a device offers.
	CoopMatShape *[3]int
	// NF4SlabBytes caps the dequantized slab of an NF4 weight on the
	// workgroup-scope path (0: 32 MiB). Less memory, more dispatches.
	NF4SlabBytes int
}

// Dispatcher plans and records the engine's kernels on one device: every
// matmul form on the narrow, cooperative, scalar and NF4-slab paths with
// split-K, and the elementwise adds and gated activations. It is cheap:
// pipelines are cached by the device. It is safe for concurrent use by
// goroutines that record on recorders of their own.
type Dispatcher struct {
	dev       *vk.Device
	opt       Options
	coop      map[dtype.DType]*coopSupport // subgroup-scope support by dtype
	cm2       map[dtype.DType][]CM2Tile    // workgroup-scope tiles the device runs, by dtype
	cm2Narrow map[dtype.DType][]CM2Tile    // the same for [M, r] outputs (cm2NarrowTiles)
	cm2NF4    map[dtype.DType][]CM2Tile    // the cm2 tiles an NF4 B takes (nf4CM2Tiles)
	slabMu    sync.Mutex                   // recordings on several goroutines share the slab cache
	slab      slabCache                    // the NF4 slab scratch of the latest recording
}

// New makes a dispatcher on dev with options opt. The device must support
// 16-bit storage buffers (every current desktop driver and lavapipe do).
func New(dev *vk.Device, opt Options) (*Dispatcher, error) {
	if dev == nil {
		return nil, fmt.Errorf("kernels: device is nil: %w", ErrBadInput)
	}
	if dev.Released() {
		return nil, fmt.Errorf("kernels: device is released: %w", vk.ErrReleased)
	}
	if !dev.Caps().Storage16 {
		return nil, fmt.Errorf("kernels: device %s lacks 16-bit storage buffers: %w", dev.Info().Name, vk.ErrUnsupported)
	}
	if err := opt.check(); err != nil {
		return nil, fmt.Errorf("kernels: options: %w", err)
	}
	c := dev.Caps()
	cm2 := probeCoopMat2(c, opt.cm2Tiles())
	return &Dispatcher{dev: dev, opt: opt, coop: probeCoopMat(c, opt),
		cm2: cm2, cm2Narrow: probeCoopMat2(c, cm2NarrowTiles), cm2NF4: nf4CM2Tiles(c, cm2)}, nil
}

// maxCM2Unroll bounds CM2Tile.Unroll: the driver unrolls that many K
// steps' loads and multiplies, and its compile time and code size grow
// with them (eight is the default, sixteen the most measured).
const maxCM2Unroll = 64

// check refuses tile overrides that no kernel could take and a negative
// slab size.
func (o Options) check() error {
	if t := o.CoopMatTile; t != nil && (min(t.BM, t.BN, t.BK, t.WM, t.WN) <= 0 || t.BM%t.WM != 0 || t.BN%t.WN != 0 || t.BM%8 != 0 || t.BN%8 != 0) {
		return fmt.Errorf("CoopMatTile %+v: fields must be positive, BM a multiple of WM and of 8, BN of WN and of 8: %w", *t, ErrBadInput)
	}
	if t := o.CoopMat2Tile; t != nil && (min(t.BM, t.BN, t.BK, t.WG) <= 0 || t.Unroll < 0 || t.Unroll > maxCM2Unroll) {
		return fmt.Errorf("CoopMat2Tile %+v: BM, BN, BK and WG must be positive, Unroll in [0, %d]: %w", *t, maxCM2Unroll, ErrBadInput)
	}
	if o.CoopMat2Unroll < 0 || o.CoopMat2Unroll > maxCM2Unroll {
		return fmt.Errorf("CoopMat2Unroll %d: want [0, %d]: %w", o.CoopMat2Unroll, maxCM2Unroll, ErrBadInput)
	}
	if o.NF4SlabBytes < 0 {
		return fmt.Errorf("NF4SlabBytes %d is negative: %w", o.NF4SlabBytes, ErrBadInput)
	}
	return nil
}

// Device is the dispatcher's device.
func (e *Dispatcher) Device() *vk.Device { return e.dev }

// CoopMat reports whether products of dtype d can run on subgroup-scope
// cooperative matrices (VK_KHR_cooperative_matrix).
func (e *Dispatcher) CoopMat(d dtype.DType) bool { return !e.opt.DisableCoopMat && e.coop[d] != nil }

// CoopMat2 reports whether products of dtype d can run on workgroup-scope
// cooperative matrices (VK_NV_cooperative_matrix2).
func (e *Dispatcher) CoopMat2(d dtype.DType) bool {
	return !e.opt.DisableCoopMat && !e.opt.DisableCoopMat2 && len(e.cm2[d]) > 0
}

// targetGroups is how many workgroups keep the device busy: a discrete GPU
// has on the order of a hundred multiprocessors; a CPU device a few threads.
func (e *Dispatcher) targetGroups() int {
	n := 512
	if e.dev.Info().Type == vk.DeviceCPU {
		n = 16
	}
	if targetGroupsCap > 0 {
		n = min(n, targetGroupsCap)
	}
	return n
}

// targetGroupsCap, when positive, caps targetGroups. A variable so that
// tests can run the plans a GPU gives large products on small tensors.
var targetGroupsCap int

// gridRowCap, when positive, caps gridRows below the device's limit. A
// variable so that tests can shrink it and run the kernels' row loops on
// small tensors, as addGrid does for the adds.
var gridRowCap int

// gridRows is the grid height for a kernel that loops over rows by the
// grid height: rows, capped at the device's workgroup-count limit.
func (e *Dispatcher) gridRows(rows int) uint32 {
	limit := int(e.dev.Caps().MaxWorkgroupCount[1])
	if gridRowCap > 0 {
		limit = min(limit, gridRowCap)
	}
	return uint32(max(1, min(rows, limit)))
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func b32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
