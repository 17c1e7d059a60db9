package lora

import (
	"fmt"

	"github.com/vklora/vklora/vk"
)

// MatmulLoRA records Y = X·Wᵀ + s·(X·Aᵀ)·Bᵀ (+ bias [out] when p.Bias is
// set) for X [M, in] and returns Y [M, out] in the layer dtype. With out non-nil the result is written there
// (it must be [M, out] of the layer dtype) and out is returned. The result
// is valid after rec.Submit. Without an adapter it is the plain X·Wᵀ.
func (e *Engine) MatmulLoRA(rec *vk.Recorder, x *vk.Tensor, p *Projection, out *vk.Tensor) (*vk.Tensor, error) {
	if rec == nil {
		return nil, fmt.Errorf("lora: MatmulLoRA: recorder is nil: %w", ErrBadInput)
	}
	o, in, r, d, err := p.shape("w")
	if err != nil {
		return nil, fmt.Errorf("lora: MatmulLoRA: %w", err)
	}
	m, err := checkInput("X", x, in, d)
	if err != nil {
		return nil, fmt.Errorf("lora: MatmulLoRA: %w", err)
	}
	y := out
	if y == nil {
		if y, err = e.newOut("Y", d, m, o); err != nil {
			return nil, err
		}
	} else if err := checkMatrix("out", y, m, o, d); err != nil {
		return nil, fmt.Errorf("lora: MatmulLoRA: %w", err)
	} else if err := checkNoAlias(y, "X", x, p); err != nil {
		return nil, fmt.Errorf("lora: MatmulLoRA: %w", err)
	}
	if p.ext() {
		ext, err := e.extForward(rec, x, p, r, y, newDropCache())
		if err != nil {
			if out == nil {
				y.Release()
			}
			return nil, err
		}
		rec.Hold(ext) // nothing runs a backward on it
		return y, nil
	}
	xa, err := e.linearForward(rec, x, p, r, y)
	if err != nil {
		if out == nil {
			y.Release()
		}
		return nil, err
	}
	if xa != nil {
		rec.Hold(xa)
	}
	return y, nil
}

// checkNoAlias refuses an output that shares memory with the input or with
// one of the projection's tensors: the kernels read inputs while they write
// the output, so aliasing would give a silently wrong result.
func checkNoAlias(out *vk.Tensor, xName string, x *vk.Tensor, p *Projection) error {
	type named struct {
		name string
		t    *vk.Tensor
	}
	ins := []named{{xName, x}, {"A", p.A}, {"B", p.B}, {"bias", p.Bias}, {"W", p.W.Dense},
		{"lora_B bias", p.LoRABias}, {"DoRA magnitude", p.Magnitude}}
	if p.Dropout != nil {
		ins = append(ins, named{"dropout mask", p.Dropout.Mask})
	}
	if w := p.W.NF4; w != nil {
		ins = append(ins, named{"W (NF4 codes)", w.Packed}, named{"W (NF4 state)", w.State})
	}
	for _, in := range ins {
		if vk.Overlaps(out, in.t) {
			return fmt.Errorf("out %s shares memory with %s %s (write to a separate tensor): %w", out, in.name, in.t, ErrBadInput)
		}
	}
	return nil
}
