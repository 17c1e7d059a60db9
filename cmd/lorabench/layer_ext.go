package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/kernels"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
)

// layerExt is the set of PEFT extensions that bench -dropout, -lora-bias
// and -dora put on every projection of the layer ops (docs/LORA-MATH.md):
// LoRA dropout on the device's Philox generator (one generator per
// projection, as PEFT draws one mask per projection, advancing every
// step), a random lora_B bias, and DoRA with a magnitude near the row
// norms of W + s·B·A.
type layerExt struct {
	Dropout  float64
	LoRABias bool
	DoRA     bool
}

// check refuses what PEFT refuses: a probability outside [0, 1), and DoRA
// together with a lora_B bias.
func (e layerExt) check() error {
	if math.IsNaN(e.Dropout) || e.Dropout < 0 || e.Dropout >= 1 {
		return usagef("-dropout %v: want a probability in [0, 1)", e.Dropout)
	}
	if e.DoRA && e.LoRABias {
		return usagef("-dora and -lora-bias are exclusive: PEFT refuses use_dora with lora_bias")
	}
	return nil
}

// formSuffix names the extensions in a row's form, e.g.
// " dropout=0.1+dora"; "" without any.
func (e layerExt) formSuffix() string {
	var fs []string
	if e.Dropout > 0 {
		fs = append(fs, "dropout="+strconv.FormatFloat(e.Dropout, 'g', -1, 64))
	}
	if e.LoRABias {
		fs = append(fs, "lora_bias")
	}
	if e.DoRA {
		fs = append(fs, "dora")
	}
	if len(fs) == 0 {
		return ""
	}
	return " " + strings.Join(fs, "+")
}

// setup gives the projection p and its reference twin rp the extensions:
// a lora_B bias N(0, 0.5²), a magnitude that is the row norm of
// W + s·B·A (of the dequantized W for NF4) times a factor drawn from
// [0.6, 1.4) per row, so that m/‖·‖ ≠ 1, and a dropout generator of its
// own. The reference's masks are set for validation (validationProjs).
// Uploaded tensors join held.
func (e layerExt) setup(dev *vk.Device, held *tensors, rng *rand.Rand, d dtype.DType, rp *ref.Proj, p *lora.Projection) error {
	var err error
	if e.LoRABias {
		rp.LoRABias = ref.RoundTo(d, ref.Random(rng, rp.Out, 0.5))
		if p.LoRABias, err = held.upload(dev, d, rp.LoRABias, rp.Out); err != nil {
			return err
		}
	}
	if e.DoRA {
		m := ref.DoRANorms(rp)
		for o := range m {
			m[o] *= 0.6 + 0.8*rng.Float64()
		}
		rp.Magnitude = ref.RoundTo(d, m)
		if p.Magnitude, err = held.upload(dev, d, rp.Magnitude, rp.Out); err != nil {
			return err
		}
	}
	if e.Dropout > 0 {
		p.Dropout = &lora.Dropout{P: e.Dropout, Seed: rng.Uint64()}
		rp.P = e.Dropout
	}
	return nil
}

// validationProjs returns the reference projections of a validation run on
// mv rows: with dropout, copies of rps holding the [mv, in] keep masks
// that the next forward of each ps draws from its generator's current
// offset (kernels.DropoutSource.Keep, the device's Philox bit for bit).
func (e layerExt) validationProjs(rps []*ref.Proj, ps []*lora.Projection, mv int) []*ref.Proj {
	if e.Dropout == 0 {
		return rps
	}
	out := make([]*ref.Proj, len(rps))
	for i, rp := range rps {
		d := ps[i].Dropout
		src := kernels.DropoutSource{P: d.P, Seed: d.Seed, Offset: d.Offset}
		c := *rp
		c.Mask = make([]float64, mv*rp.In)
		for k := range c.Mask {
			if src.Keep(uint64(k)) {
				c.Mask[k] = 1
			}
		}
		out[i] = &c
	}
	return out
}

// needs adds the device buffers the extensions add to one step of
// projection p over m rows (a lower bound, as layerNeeds is): the dropped
// input and, in the backward, the masked gradient term, [m, in] each;
// DoRA's product [m, out] and, in the backward, G ⊙ c (and G ⊙ (c − 1)
// and X − Xd with dropout), plus the dense copy of an NF4 weight its row
// norms are taken of.
func (e layerExt) needs(nd *needs, p projDim, m int, d dtype.DType, w weightFormat, bwd bool) {
	ds, fm, out, in := float64(d.Size()), float64(m), float64(p.out), float64(p.in)
	if e.Dropout > 0 {
		nd.buf(fmt.Sprintf("Xd_%s [%d,%d] %s", p.name, m, p.in, d), ds, fm, in)
		if bwd {
			nd.buf(fmt.Sprintf("dropout backward T_%s [%d,%d] %s", p.name, m, p.in, d), ds, fm, in)
		}
	}
	if !e.DoRA {
		return
	}
	nd.buf(fmt.Sprintf("DoRA product_%s [%d,%d] %s", p.name, m, p.out, d), ds, fm, out)
	if e.Dropout > 0 {
		nd.buf(fmt.Sprintf("X − Xd_%s [%d,%d] %s", p.name, m, p.in, d), ds, fm, in)
	}
	if bwd {
		nd.buf(fmt.Sprintf("G ⊙ c_%s [%d,%d] %s", p.name, m, p.out, d), ds, fm, out)
		if e.Dropout > 0 {
			nd.buf(fmt.Sprintf("G ⊙ (c − 1)_%s [%d,%d] %s", p.name, m, p.out, d), ds, fm, out)
		}
	}
	if w.NF4 {
		nd.buf(fmt.Sprintf("W_%s dequantized [%d,%d] %s", p.name, p.out, p.in, d), ds, out, in)
	}
}
