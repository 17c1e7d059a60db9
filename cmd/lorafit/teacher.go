package main

import (
	"math"
	"math/rand/v2"

	"github.com/vklora/vklora/finetune"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/vk"
)

// The teacher of a layer is the same frozen base plus a hidden low-rank
// delta on every projection the adapter trains: W + V·U with U [tr, in]
// ~ N(0, 1/in) and V [out, tr] ~ N(0, σ²/tr), so that on unit-normal inputs
// the delta moves each output by about σ (-teacher-scale) against base
// outputs of about 1. With tr ≤ r the student (W + s·B·A) can match it
// exactly: the optimum is zero loss, and what remains is rounding.

// teacher is one layer's teacher: the engine's layers over the student's
// base weights (borrowed, never released here) with the delta as their
// adapter at scale 1.
type teacher struct {
	qkv   *lora.QKV
	o     *lora.O
	mlp   *lora.MLP
	delta []*vk.Tensor // U and V of every projection, owned
}

// newTeacher draws the deltas of layer l from rng and uploads them.
func newTeacher(eng *lora.Engine, l *finetune.Layer, rank int, scale float64, rng *rand.Rand) (*teacher, error) {
	t := &teacher{}
	proj := func(p *lora.Projection) (*lora.Projection, error) {
		tp := &lora.Projection{W: p.W, Bias: p.Bias, Scale: 1}
		if !p.HasAdapter() {
			return tp, nil // not trained: the teacher keeps the base
		}
		out, in := p.B.Dim(0), p.A.Dim(1)
		u, err := eng.Device().TensorFrom(p.A.DType(), gaussian(rng, rank*in, 1/math.Sqrt(float64(in))), rank, in)
		if err != nil {
			return nil, err
		}
		t.delta = append(t.delta, u)
		v, err := eng.Device().TensorFrom(p.A.DType(), gaussian(rng, out*rank, scale/math.Sqrt(float64(rank))), out, rank)
		if err != nil {
			return nil, err
		}
		t.delta = append(t.delta, v)
		tp.A, tp.B = u, v
		return tp, nil
	}
	var ps [7]*lora.Projection
	for i, p := range []*lora.Projection{l.QKV.Q, l.QKV.K, l.QKV.V, l.O.Proj, l.MLP.Gate, l.MLP.Up, l.MLP.Down} {
		tp, err := proj(p)
		if err != nil {
			t.release()
			return nil, err
		}
		ps[i] = tp
	}
	t.qkv = &lora.QKV{Engine: eng, Q: ps[0], K: ps[1], V: ps[2]}
	t.o = &lora.O{Engine: eng, Proj: ps[3]}
	t.mlp = &lora.MLP{Engine: eng, Gate: ps[4], Up: ps[5], Down: ps[6], Act: l.MLP.Act}
	return t, nil
}

// release frees the deltas only: the base weights are the student's.
func (t *teacher) release() {
	for _, x := range t.delta {
		x.Release()
	}
	t.delta = nil
}

// gaussian draws n values N(0, std²).
func gaussian(rng *rand.Rand, n int, std float64) []float32 {
	xs := make([]float32, n)
	for i := range xs {
		xs[i] = float32(rng.NormFloat64() * std)
	}
	return xs
}
