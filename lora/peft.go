package lora

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/vklora/vklora/kernels"
	"github.com/vklora/vklora/vk"
)

// ErrNotImplemented marks adapter features PEFT has and the engine does not
// implement yet, so callers can fall back to another path instead of
// training with a silently different model.
var ErrNotImplemented = errors.New("not implemented")

// LoRALinear mirrors one PEFT LoRA Linear (peft.tuners.lora.Linear) for its
// active adapter: the frozen base layer and lora_A [R, in], lora_B [out, R]
// with lora_alpha and r from the adapter's LoraConfig. A and B are both nil
// for a Linear PEFT did not adapt (then R is ignored).
type LoRALinear struct {
	Base Weight
	// Bias is the base layer's bias [out] of the base dtype, or nil. It is
	// frozen like Base and applies whether or not the adapter is active.
	Bias *vk.Tensor
	// BiasTrainable marks Bias as trained (PEFT bias="all" or "lora_only"):
	// the layers' backward then returns its gradient.
	BiasTrainable bool
	A, B          *vk.Tensor
	// LoRABias is lora_B's bias [out] (PEFT lora_bias=True), of the adapter
	// dtype, or nil; it is scaled by s with the rest of the LoRA term.
	LoRABias *vk.Tensor
	// Magnitude is DoRA's magnitude vector m [out] (PEFT use_dora, saved as
	// lora_magnitude_vector), of the adapter dtype, or nil for plain LoRA.
	Magnitude *vk.Tensor
	// Dropout is lora_dropout, the probability in [0, 1) that an element
	// of the LoRA branch's input is zeroed in training.
	Dropout   float64
	Alpha     float64
	R         int
	UseRSLoRA bool // scale alpha/√r (rsLoRA) instead of alpha/r
	// Disabled (PEFT's disable_adapters) and Merged (B·A already added into
	// W) both make the layer the plain base matmul.
	Disabled, Merged bool
	// DoRAFactor is the DoRA factor m/‖W + s·B·A‖ (f32 [out]) that
	// Engine.Merge kept from the unmerged weight for Unmerge, as PEFT
	// caches the weight norm; nil otherwise. Unlike the layer's other
	// tensors it is owned by the layer: Unmerge releases it, and a caller
	// that drops a merged DoRA layer releases it.
	DoRAFactor *vk.Tensor
}

// LoRAScale is PEFT's scaling: alpha/r, or alpha/√r with rsLoRA.
func LoRAScale(alpha float64, r int, rslora bool) float64 {
	if rslora {
		return alpha / math.Sqrt(float64(r))
	}
	return alpha / float64(r)
}

// GetLoRAParameters returns the Projection the layers compute for l (after
// axolotl's get_lora_parameters): the base weight, and A, B, the scale and
// the adapter's extensions (lora_B bias, DoRA magnitude, dropout) unless
// the adapter is disabled, merged or absent, and the base bias in every
// case. A dropout gets its own mask generator, seeded from a process-wide
// sequence so that every projection draws its own mask, as PEFT's
// per-projection nn.Dropout does; set Projection.Dropout.Seed for a
// reproducible run, or share one *Dropout to share masks. Errors name the argument (bias, lora_A, lora_B, r,
// lora_alpha) and its shape and wrap ErrBadInput.
func GetLoRAParameters(l *LoRALinear) (*Projection, error) {
	p, err := getLoRAParameters(l)
	if err != nil {
		return nil, fmt.Errorf("lora: GetLoRAParameters: %w", err)
	}
	return p, nil
}

func getLoRAParameters(l *LoRALinear) (*Projection, error) {
	if l == nil {
		return nil, fmt.Errorf("layer is nil: %w", ErrBadInput)
	}
	out, in, err := l.Base.dims()
	if err != nil {
		return nil, fmt.Errorf("base %w", err)
	}
	p := &Projection{W: l.Base, Bias: l.Bias, BiasTrainable: l.BiasTrainable}
	if l.Bias != nil {
		d := l.Base.mat().DType()
		if err := kernels.CheckBias(l.Bias, out, d, fmt.Sprintf("base weight %s[%d %d]", d, out, in)); err != nil {
			return nil, err
		}
	}
	if l.Disabled || l.Merged || (l.A == nil && l.B == nil) {
		return p, nil
	}
	switch {
	case l.A == nil || l.B == nil:
		return nil, fmt.Errorf("lora_A %s and lora_B %s must both be set or both nil: %w", l.A, l.B, ErrBadInput)
	case l.R < 1:
		return nil, fmt.Errorf("r = %d must be ≥ 1 with an adapter: %w", l.R, ErrBadInput)
	case math.IsNaN(l.Alpha) || math.IsInf(l.Alpha, 0):
		return nil, fmt.Errorf("lora_alpha = %v is not finite: %w", l.Alpha, ErrBadInput)
	case l.A.Released() || l.B.Released():
		return nil, fmt.Errorf("lora_A or lora_B is released: %w", ErrBadInput)
	case l.A.Rank() != 2 || l.A.Dim(0) != l.R || l.A.Dim(1) != in:
		return nil, fmt.Errorf("lora_A %s must be [r=%d, in=%d] for base weight [%d,%d]: %w", l.A, l.R, in, out, in, ErrBadInput)
	case l.B.Rank() != 2 || l.B.Dim(0) != out || l.B.Dim(1) != l.R:
		return nil, fmt.Errorf("lora_B %s must be [out=%d, r=%d] for base weight [%d,%d]: %w", l.B, out, l.R, out, in, ErrBadInput)
	}
	p.A, p.B, p.Scale = l.A, l.B, LoRAScale(l.Alpha, l.R, l.UseRSLoRA)
	p.LoRABias, p.Magnitude = l.LoRABias, l.Magnitude
	if l.Dropout != 0 {
		p.Dropout = &Dropout{P: l.Dropout, Seed: nextDropoutSeed()}
	}
	// Dtype and the remaining checks are the layers' own, so they agree.
	if _, _, _, _, err := p.shape("w"); err != nil {
		return nil, err
	}
	return p, nil
}

// dropoutSeeds numbers the dropout generators GetLoRAParameters creates.
var dropoutSeeds atomic.Uint64

// nextDropoutSeed is a fresh seed: the sequence's next number, mixed
// (splitmix64's finaliser) so that neighbouring seeds share no structure.
func nextDropoutSeed() uint64 {
	z := dropoutSeeds.Add(1) * 0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}
