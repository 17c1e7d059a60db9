package lora

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
)

// Engine holds a device and picks kernels and tile shapes for it. It is
// cheap: kernels are cached by the device. Like the device it is for one
// goroutine at a time.
type Engine struct {
	dev       *vk.Device
	coop      map[dtype.DType]*coopSupport // cooperative-matrix support by dtype
	cm2       map[dtype.DType][]cm2Tile    // workgroup-scope tiles the device runs, by dtype
	cm2Narrow map[dtype.DType][]cm2Tile    // the same for [M, r] outputs (cm2NarrowTiles)
	noCoop    bool                         // SetCoopMat(false) or VKLORA_DISABLE_COOPMAT=1
	noCM2     bool                         // VKLORA_DISABLE_COOPMAT2=1, or tests of the subgroup kernel
	noNarrow  bool                         // VKLORA_DISABLE_NARROW=1, or tests of the tiled kernels
	rowCap    int                          // tests: a lower grid-height cap than the device's
	slabBytes int                          // tests: a smaller NF4 slab than defaultSlabBytes
	slab      slabCache                    // the NF4 slab scratch of the latest recording
}

// slabCache remembers one recording's NF4 slab scratch (see slabScratch).
type slabCache struct {
	rec *vk.Recorder
	t   *vk.Tensor
}

// NewEngine makes an engine on dev. The device must support 16-bit storage
// (every current desktop driver and lavapipe do).
func NewEngine(dev *vk.Device) (*Engine, error) {
	if dev == nil {
		return nil, fmt.Errorf("lora: NewEngine: device is nil")
	}
	if !dev.Caps().Storage16 {
		return nil, fmt.Errorf("lora: device %s lacks 16-bit storage buffers: %w", dev.Info().Name, vk.ErrUnsupported)
	}
	return &Engine{dev: dev, coop: probeCoopMat(dev.Caps()), cm2: probeCoopMat2(dev.Caps(), cm2TileCandidates()),
		cm2Narrow: probeCoopMat2(dev.Caps(), cm2NarrowTiles),
		noCoop:    coopDisabledByEnv(), noCM2: coopMat2DisabledByEnv(), noNarrow: narrowDisabledByEnv()}, nil
}

// Device is the engine's device.
func (e *Engine) Device() *vk.Device { return e.dev }
