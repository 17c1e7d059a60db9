package lora

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/kernels"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/vk"
)

// Options switch kernel paths off and override tile choices
// (kernels.Options). The zero value is the default: every path the device
// supports.
type Options = kernels.Options

// ErrBadInput marks errors caused by the caller's arguments (shapes, dtypes,
// nil or released tensors, non-finite scales). The engine stays usable. It
// is kernels.ErrBadInput, so errors.Is matches either name.
var ErrBadInput = kernels.ErrBadInput

// Engine runs the LoRA layers on one device: it validates a layer's
// arguments, then records its products and elementwise steps through the
// kernel dispatcher (package kernels), which picks each kernel from the
// device's capabilities. It is cheap: kernels are cached by the device.
// Goroutines may share one engine, its layers and their frozen weights,
// each recording on a Recorder of its own.
type Engine struct {
	dev *vk.Device
	k   *kernels.Dispatcher
}

// NewEngine makes an engine on dev with options opt (Options{} for the
// defaults). The device must support 16-bit storage buffers (every
// current desktop driver and lavapipe do).
func NewEngine(dev *vk.Device, opt Options) (*Engine, error) {
	k, err := kernels.New(dev, opt)
	if err != nil {
		return nil, fmt.Errorf("lora: NewEngine: %w", err)
	}
	return &Engine{dev: dev, k: k}, nil
}

// Device is the engine's device.
func (e *Engine) Device() *vk.Device { return e.dev }

// Kernels is the engine's kernel dispatcher, for callers that record
// products or elementwise steps of their own.
func (e *Engine) Kernels() *kernels.Dispatcher { return e.k }

// CoopMat reports whether matmuls of dtype d may run on subgroup-scope
// cooperative matrices (VK_KHR_cooperative_matrix).
func (e *Engine) CoopMat(d dtype.DType) bool { return e.k.CoopMat(d) }

// CoopMat2 reports whether matmuls of dtype d may run on workgroup-scope
// cooperative matrices (VK_NV_cooperative_matrix2).
func (e *Engine) CoopMat2(d dtype.DType) bool { return e.k.CoopMat2(d) }

// Mat is a 2-D matmul operand: a dense tensor or an NF4 weight, optionally
// transposed (kernels.Mat).
type Mat = kernels.Mat

// Dense wraps a 2-D tensor as an operand.
func Dense(t *vk.Tensor) Mat { return kernels.Dense(t) }

// NF4 wraps a 4-bit weight [out, in] as an operand; it may only be the B
// operand of a matmul.
func NF4(w *quant.DeviceNF4) Mat { return kernels.NF4(w) }

// MatmulTo computes C = alpha·op(A)·op(B) + beta·C with fp32 accumulation,
// where op(A) is [M, K], op(B) is [K, N] and C is [M, N]. Operands are dense
// f32/f16/bf16 tensors (B may be NF4); the dtypes must be one layer dtype D
// or f32. beta = 0 never reads C, so C may hold garbage.
func (e *Engine) MatmulTo(rec *vk.Recorder, c *vk.Tensor, a, b Mat, alpha, beta float32) error {
	return e.k.MatmulTo(rec, c, a, b, alpha, beta)
}

// AddTo records dst = dst + alpha·src elementwise in fp32, rounded once to
// the storage dtype (kernels.Dispatcher.AddTo): the gradient accumulation
// of package autograd. The result is valid after rec.Submit; record a
// barrier before anything else reads dst.
func (e *Engine) AddTo(rec *vk.Recorder, dst, src *vk.Tensor, alpha float32) error {
	return e.k.AddTo(rec, dst, src, alpha)
}

// AddBiasTo records y[m, n] = y[m, n] + bias[n] for y [M, N] and bias [N] of
// y's dtype, in fp32 and rounded once. The result is valid after rec.Submit.
func (e *Engine) AddBiasTo(rec *vk.Recorder, y, bias *vk.Tensor) error {
	return e.k.AddBiasTo(rec, y, bias)
}

// CoopTile is a subgroup-scope cooperative-matrix tile (Options.CoopMatTile).
type CoopTile = kernels.CoopTile

// CM2Tile is a workgroup-scope cooperative-matrix tile (Options.CoopMat2Tile).
type CM2Tile = kernels.CM2Tile
