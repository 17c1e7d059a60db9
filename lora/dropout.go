package lora

import (
	"fmt"

	"github.com/vklora/vklora/kernels"
	"github.com/vklora/vklora/vk"
)

// Dropout is the inverted dropout of one projection's LoRA branch in
// training (PEFT's lora_dropout): the branch sees Xd = X ⊙ M / (1 − P)
// while the base product sees X. The mask M is generated on the device
// from (Seed, Offset) by a counter-based generator (Philox-4x32-10, one
// draw for four elements, as kernels.DropoutSource.Keep reproduces on the
// host) and regenerated in the
// backward, so no mask or Xd is kept between the passes.
//
// Each forward uses the counters [Offset, Offset + M·in) and then advances
// Offset past them, so successive steps draw fresh masks and a run is
// reproducible from its seed. A forward that returns an error leaves
// Offset as it was. Projections that share one *Dropout share
// one mask per forward (axolotl's fused QKV and gate/up); separate values,
// PEFT's behaviour and the default of GetLoRAParameters, draw their own.
// A Dropout is not safe for concurrent forwards.
//
// Mask, when set, replaces the generator: a U8 [M, in] keep mask (1 keep,
// 0 drop), e.g. a framework's own mask for conformance checks. It is read
// in the backward too, so it must stay unchanged until then.
type Dropout struct {
	P      float64
	Seed   uint64
	Offset uint64
	Mask   *vk.Tensor
	// Eval turns dropout off (PEFT's module.eval()): the layer runs as if
	// P were 0 and Offset does not move.
	Eval bool
}

// active reports whether d changes the forward.
func (d *Dropout) active() bool { return d != nil && !d.Eval && (d.P > 0 || d.Mask != nil) }

func (d *Dropout) check(name string) error {
	if d == nil {
		return nil
	}
	if err := kernels.CheckDropoutP(d.P); err != nil {
		return fmt.Errorf("projection %s: %w", name, err)
	}
	return nil
}

// take resolves the mask source of one forward over m×in elements and
// advances the generator.
func (d *Dropout) take(m, in int) (kernels.DropoutSource, error) {
	src := kernels.DropoutSource{P: d.P, Seed: d.Seed, Offset: d.Offset, Mask: d.Mask}
	if d.Mask != nil {
		if d.Mask.Released() || d.Mask.Rank() != 2 || d.Mask.Dim(0) != m || d.Mask.Dim(1) != in {
			return src, fmt.Errorf("dropout mask %s must be u8[%d %d]: %w", d.Mask, m, in, ErrBadInput)
		}
		return src, nil
	}
	d.Offset += uint64(m) * uint64(in)
	return src, nil
}
