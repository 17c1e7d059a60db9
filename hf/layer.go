package hf

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/safetensors"
	"github.com/vklora/vklora/vk"
)

// Linear is one projection's frozen base on the device: its weight [out,
// in], dense or NF4, and its bias [out] or nil.
type Linear struct {
	Weight lora.Weight
	Bias   *vk.Tensor
}

// Release frees the weight and the bias; safe to call twice.
func (l *Linear) Release() {
	if l == nil {
		return
	}
	l.Weight.Dense.Release()
	l.Weight.NF4.Release()
	l.Bias.Release()
	l.Weight, l.Bias = lora.Weight{}, nil
}

// LayerWeights is one decoder layer's seven projections on the device,
// all in one dtype (NF4 weights dequantize to it).
type LayerWeights struct {
	Index                      int
	DType                      dtype.DType
	HiddenAct                  string // the config's gate activation, for the GatedMLP
	Q, K, V, O, Gate, Up, Down Linear
}

// Linear returns projection m, or nil for a name not in Modules.
func (lw *LayerWeights) Linear(m Module) *Linear {
	switch m {
	case Q:
		return &lw.Q
	case K:
		return &lw.K
	case V:
		return &lw.V
	case O:
		return &lw.O
	case Gate:
		return &lw.Gate
	case Up:
		return &lw.Up
	case Down:
		return &lw.Down
	}
	return nil
}

// Release frees every device tensor of the layer; safe to call twice, and
// after layers built from it released the same tensors.
func (lw *LayerWeights) Release() {
	if lw == nil {
		return
	}
	for _, m := range Modules {
		lw.Linear(m).Release()
	}
}

// Bytes is the device memory the layer's weights and biases hold.
func (lw *LayerWeights) Bytes() uint64 {
	var n uint64
	for _, m := range Modules {
		l := lw.Linear(m)
		if !l.Weight.Dense.Released() {
			n += l.Weight.Dense.Bytes()
		}
		if !l.Weight.NF4.Released() {
			n += l.Weight.NF4.Bytes()
		}
		if !l.Bias.Released() {
			n += l.Bias.Bytes()
		}
	}
	return n
}

// Layer uploads decoder layer i's seven projections (q, k, v, o, gate, up,
// down) and their biases to dev in dtype d (0: the checkpoint's DType),
// one projection at a time: a dense weight is streamed from the file to
// the device in pieces, converted on the way; a bitsandbytes NF4 weight is
// read (its packed codes and scales only), checked by quant.LoadNF4 and
// uploaded as a quant.DeviceNF4, whose quant_state dtype must be d. Shapes
// are checked against the config. On error nothing stays allocated. The
// caller releases the result.
func (c *Checkpoint) Layer(i int, dev *vk.Device, d dtype.DType) (*LayerWeights, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	if d == 0 {
		d = c.DType()
	}
	if err := checkDevice("Layer", dev, d); err != nil {
		return nil, err
	}
	if i < 0 || i >= c.cfg.NumHiddenLayers {
		return nil, fmt.Errorf("hf: Layer: index %d outside [0, %d) (num_hidden_layers): %w", i, c.cfg.NumHiddenLayers, lora.ErrBadInput)
	}
	plans, err := c.plan(i)
	if err != nil {
		return nil, err
	}
	lw := &LayerWeights{Index: i, DType: d, HiddenAct: c.cfg.HiddenAct}
	for _, p := range plans {
		if err := c.loadProj(dev, p, d, lw.Linear(p.module)); err != nil {
			lw.Release()
			return nil, err
		}
	}
	return lw, nil
}

// loadProj uploads one projection into l.
func (c *Checkpoint) loadProj(dev *vk.Device, p projPlan, d dtype.DType, l *Linear) error {
	var err error
	if p.nf4 != nil {
		l.Weight.NF4, err = c.loadNF4(dev, p, d)
	} else {
		l.Weight.Dense, err = c.upload(dev, p.weight(), d, []int{p.out, p.in})
	}
	if err != nil {
		return err
	}
	if p.bias != "" {
		l.Bias, err = c.upload(dev, p.bias, d, []int{p.out})
	}
	return err
}

// loadNF4 reads one quantized projection's tensors (from whichever shards
// hold them) into a small in-memory File for quant.LoadNF4, checks the
// quant state against the config and the layer dtype, and uploads it.
func (c *Checkpoint) loadNF4(dev *vk.Device, p projPlan, d dtype.DType) (*quant.DeviceNF4, error) {
	f := safetensors.New()
	for _, n := range p.nf4 {
		t, err := c.ReadTensor(n)
		if err != nil {
			return nil, err
		}
		f.Tensors[n] = t
	}
	state := p.prefix + ".weight.quant_state.bitsandbytes__nf4"
	w, err := quant.LoadNF4(f, p.prefix)
	if err != nil {
		return nil, fmt.Errorf("hf: %s: layer %d %s: %w: %w", c.path(p.weight()), p.layer, p.module, err, ErrBadCheckpoint)
	}
	f = nil // LoadNF4 copied what it keeps; the raw tensors may go
	if w.State.Shape != [2]int{p.out, p.in} {
		return nil, fmt.Errorf("hf: %s: tensor %q: quant_state shape %v, want [%d %d] from %s: %w",
			c.path(state), state, w.State.Shape, p.out, p.in, c.shapeWhy(p.module), ErrBadCheckpoint)
	}
	if w.State.DType != d {
		return nil, fmt.Errorf("hf: %s: tensor %q: the NF4 weight dequantizes to %s, but the layer is loaded as %s (pass %s): %w",
			c.path(state), state, w.State.DType, d, w.State.DType, lora.ErrBadInput)
	}
	dw, err := quant.Upload(dev, w)
	if err != nil {
		return nil, fmt.Errorf("hf: layer %d %s: %w", p.layer, p.module, err)
	}
	return dw, nil
}
