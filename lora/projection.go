package lora

import (
	"fmt"
	"math"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/kernels"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/vk"
)

// Weight is a frozen base weight W [out, in]: a dense tensor or NF4.
type Weight struct {
	Dense *vk.Tensor
	NF4   *quant.DeviceNF4
}

func (w Weight) mat() Mat {
	if w.NF4 != nil {
		return NF4(w.NF4)
	}
	return Dense(w.Dense)
}

func (w Weight) dims() (out, in int, err error) {
	switch {
	case w.Dense != nil && w.NF4 != nil:
		return 0, 0, fmt.Errorf("weight has both a dense and an NF4 tensor: %w", ErrBadInput)
	case w.NF4 != nil:
		if w.NF4.Released() {
			return 0, 0, fmt.Errorf("NF4 weight is released: %w", ErrBadInput)
		}
		return w.NF4.Out, w.NF4.In, nil
	case w.Dense == nil || w.Dense.Released():
		return 0, 0, fmt.Errorf("weight is nil or released: %w", ErrBadInput)
	case w.Dense.Rank() != 2:
		return 0, 0, fmt.Errorf("weight %s must be 2-D [out,in]: %w", w.Dense, ErrBadInput)
	}
	return w.Dense.Dim(0), w.Dense.Dim(1), nil
}

// Projection is one LoRA-adapted linear layer (a PEFT LoRA Linear):
//
//	Y = X·Wᵀ + S·(X·Aᵀ)·Bᵀ + bias      X [M, in], W [out, in], A [r, in],
//	                                   B [out, r], bias [out] (added to each row)
//
// W and Bias are frozen: no gradient, and the bias does not change dX. A
// and B are both nil when the adapter is disabled or merged; then the
// projection is the plain X·Wᵀ (+ bias). Bias nil means none; otherwise it
// is 1-D [out] of the layer dtype, added after the matmul (Y is rounded to
// the dtype before the bias is added, and once more after).
//
// PEFT's extensions (docs/LORA-MATH.md has the formulas):
//   - BiasTrainable: the backward also returns the base bias's gradient
//     (PEFT bias="all" or "lora_only").
//   - LoRABias: lora_B's bias [out] (PEFT lora_bias=True); Y gains
//     S·LoRABias, and the backward returns its gradient.
//   - Magnitude: DoRA's m [out] (PEFT use_dora). Y becomes PEFT's DoRA
//     output with the detached row norm of W + S·B·A, which is computed
//     without forming that [out, in] matrix; the backward returns dm.
//     DoRA with LoRABias is refused, as PEFT refuses it.
//   - Dropout: the LoRA branch's inverted dropout in training (nil: none).
type Projection struct {
	W             Weight
	A, B          *vk.Tensor
	Scale         float64
	Bias          *vk.Tensor
	BiasTrainable bool
	LoRABias      *vk.Tensor
	Magnitude     *vk.Tensor
	Dropout       *Dropout
}

// HasAdapter reports whether the LoRA term is present.
func (p *Projection) HasAdapter() bool { return p.A != nil || p.B != nil }

// shape validates the projection and returns out, in and rank (0 without
// adapter) and its dtype.
func (p *Projection) shape(name string) (out, in, r int, d dtype.DType, err error) {
	if p == nil {
		return 0, 0, 0, 0, fmt.Errorf("projection %s is nil: %w", name, ErrBadInput)
	}
	out, in, err = p.W.dims()
	if err != nil {
		return 0, 0, 0, 0, fmt.Errorf("projection %s: %w", name, err)
	}
	d = p.W.mat().DType()
	if p.Bias != nil {
		if err := kernels.CheckBias(p.Bias, out, d, fmt.Sprintf("weight %s[%d %d]", d, out, in)); err != nil {
			return 0, 0, 0, 0, fmt.Errorf("projection %s: %w", name, err)
		}
	}
	if p.BiasTrainable && p.Bias == nil {
		return 0, 0, 0, 0, fmt.Errorf("projection %s: BiasTrainable without a bias: %w", name, ErrBadInput)
	}
	if !p.HasAdapter() {
		if p.LoRABias != nil || p.Magnitude != nil {
			return 0, 0, 0, 0, fmt.Errorf("projection %s: lora_B bias or DoRA magnitude without lora_A and lora_B: %w", name, ErrBadInput)
		}
		return out, in, 0, d, nil
	}
	if err := p.checkExtensions(name, out, d); err != nil {
		return 0, 0, 0, 0, err
	}
	switch {
	case p.A == nil || p.B == nil:
		return 0, 0, 0, 0, fmt.Errorf("projection %s: lora_A %s and lora_B %s must both be set or both nil: %w", name, p.A, p.B, ErrBadInput)
	case p.A.Released() || p.B.Released():
		return 0, 0, 0, 0, fmt.Errorf("projection %s: lora_A or lora_B is released: %w", name, ErrBadInput)
	case p.A.Rank() != 2 || p.B.Rank() != 2:
		return 0, 0, 0, 0, fmt.Errorf("projection %s: lora_A %s and lora_B %s must be 2-D: %w", name, p.A, p.B, ErrBadInput)
	}
	r = p.A.Dim(0)
	if p.A.Dim(1) != in {
		return 0, 0, 0, 0, fmt.Errorf("projection %s: lora_A %s must be [r,%d] for weight [%d,%d]: %w", name, p.A, in, out, in, ErrBadInput)
	}
	if p.B.Dim(0) != out || p.B.Dim(1) != r {
		return 0, 0, 0, 0, fmt.Errorf("projection %s: lora_B %s must be [%d,%d] (weight [%d,%d], lora_A rank %d): %w", name, p.B, out, r, out, in, r, ErrBadInput)
	}
	if p.A.DType() != d || p.B.DType() != d {
		return 0, 0, 0, 0, fmt.Errorf("projection %s: lora_A %s and lora_B %s must have the weight's dtype %s: %w", name, p.A, p.B, d, ErrBadInput)
	}
	if math.IsNaN(p.Scale) || math.IsInf(p.Scale, 0) {
		return 0, 0, 0, 0, fmt.Errorf("projection %s: scale %v is not finite: %w", name, p.Scale, ErrBadInput)
	}
	return out, in, r, d, nil
}

// checkInput validates X [M, in] against the projection.
func checkInput(name string, x *vk.Tensor, in int, d dtype.DType) (m int, err error) {
	if x == nil || x.Released() {
		return 0, fmt.Errorf("%s is nil or released: %w", name, ErrBadInput)
	}
	if x.Rank() != 2 || x.Dim(1) != in {
		return 0, fmt.Errorf("%s %s must be [M,%d]: %w", name, x, in, ErrBadInput)
	}
	if x.DType() != d {
		return 0, fmt.Errorf("%s %s must have the layer dtype %s: %w", name, x, d, ErrBadInput)
	}
	return x.Dim(0), nil
}

// ProjGrad holds the gradients of one projection's trainable tensors, in
// the layer dtype: dA [r, in] and dB [out, r] (nil without adapter), and,
// where the projection has them, the lora_B bias's, DoRA's magnitude's
// and the trainable base bias's ([out] each; nil otherwise).
type ProjGrad struct {
	A, B                      *vk.Tensor
	LoRABias, Magnitude, Bias *vk.Tensor
}

// Release frees every gradient; safe to call twice.
func (g *ProjGrad) Release() {
	for _, t := range []*vk.Tensor{g.A, g.B, g.LoRABias, g.Magnitude, g.Bias} {
		t.Release()
	}
}
