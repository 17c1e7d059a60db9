package lora

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/kernels"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/vk"
)

// Merging folds an adapter into its base weight, as PEFT 0.21's
// LoraLayer.merge, unmerge and get_delta_weight do (docs/MERGE.md):
//
//	plain LoRA:   W' = W + s·B·A
//	DoRA:         W' = c ⊙ (W + s·B·A)     c = m / ‖W + s·B·A‖ per output row, detached
//	lora_B bias:  b' = b + s·b_B            (PEFT refuses it without a base bias)
//	unmerge:      W = W' − s·B·A,  DoRA W = W'/c − s·B·A,  b = b' − s·b_B
//
// s·B·A is one matmul of rank r accumulated in f32; the plain merge adds it
// to W inside that matmul (beta = 1), DoRA keeps it as an f32 [out, in]
// temporary for the row step (kernels.RowScale), so either way W' is
// rounded once to the dtype. PEFT rounds B·A, then the product with s,
// then the sum to the weight dtype. c comes from the row-norm kernels the
// DoRA forward uses (Engine.doraInputs, DoraNorm), so a merged layer scales
// exactly as the unmerged one does.

// Merge records l's adapter into its dense base weight and base bias, in
// place (the formulas above), and sets l.Merged: the layers then run l as
// the plain base matmul (GetLoRAParameters leaves A and B out). For DoRA it
// keeps c, f32 [out], in l.DoRAFactor for Unmerge, as PEFT caches the
// weight norm: a merged row's norm is |m|, so c cannot be found again from
// the merged weight. The result is valid after rec.Submit. Merge records a
// barrier first, so it may follow whatever wrote W in the same recording,
// and none after: record one before anything reads W or the bias.
//
// Refused, with ErrBadInput naming the argument: an NF4 base (it has no
// dense storage to merge into: MergedWeight dequantizes it and gives a
// dense merged copy), a layer already merged (PEFT warns
// and merges nothing; a second B·A would change the model), a disabled
// adapter, a layer without adapter, a lora_B bias without a base bias, and
// every malformed adapter GetLoRAParameters refuses. Nothing is recorded
// then.
func (e *Engine) Merge(rec *vk.Recorder, l *LoRALinear) error {
	p, err := e.mergeArgs(rec, l)
	if err == nil {
		switch {
		case l.Merged:
			err = fmt.Errorf("layer is already merged (PEFT warns and merges nothing; a second merge would add s·B·A twice): %w", ErrBadInput)
		case p.W.NF4 != nil:
			err = fmt.Errorf("base weight %s is NF4, which has no dense storage to merge into: use MergedWeight, which dequantizes it, for a dense merged copy: %w", p.W.NF4, ErrBadInput)
		case l.DoRAFactor != nil:
			err = fmt.Errorf("DoRAFactor %s is set on a layer that is not merged: clear it first: %w", l.DoRAFactor, ErrBadInput)
		}
	}
	if err != nil {
		return fmt.Errorf("lora: Merge: %w", err)
	}
	var c *vk.Tensor
	if p.Magnitude != nil {
		if c, err = e.newOut("DoRA factor", dtype.F32, p.B.Dim(0)); err != nil {
			return err
		}
	}
	rec.Barrier()
	if err := e.mergeInto(rec, p, p.W.Dense, c, p.Bias); err != nil {
		if c != nil {
			rec.Hold(c) // it may be bound by what was recorded
		}
		return err
	}
	l.Merged, l.DoRAFactor = true, c
	return nil
}

// Unmerge records the inverse of Merge on l's base weight and bias, in
// place, and clears l.Merged. A DoRA layer divides by the l.DoRAFactor its
// Merge kept (PEFT divides by m over the norm it cached) and releases it
// once the recording completes. The result is valid after rec.Submit; the
// barriers are Merge's. The weight comes back within two roundings of the
// original (W' − s·B·A is rounded again), not bit for bit, as in PEFT.
// Refused with ErrBadInput: a layer that is not merged, a DoRA layer
// without its factor (one merged elsewhere, say), and what Merge refuses.
func (e *Engine) Unmerge(rec *vk.Recorder, l *LoRALinear) error {
	p, err := e.mergeArgs(rec, l)
	if err == nil {
		out := p.B.Dim(0)
		switch {
		case !l.Merged:
			err = fmt.Errorf("layer is not merged: %w", ErrBadInput)
		case p.W.NF4 != nil:
			err = fmt.Errorf("base weight %s is NF4, which Merge never merges into: %w", p.W.NF4, ErrBadInput)
		case p.Magnitude != nil && l.DoRAFactor == nil:
			err = fmt.Errorf("DoRA layer without its DoRAFactor: only the factor Merge kept can undo the merge (the merged rows' norms are |m|): %w", ErrBadInput)
		case p.Magnitude == nil && l.DoRAFactor != nil:
			err = fmt.Errorf("DoRAFactor %s on a layer without DoRA magnitude: %w", l.DoRAFactor, ErrBadInput)
		case l.DoRAFactor != nil && (l.DoRAFactor.Released() || l.DoRAFactor.Rank() != 1 || l.DoRAFactor.Dim(0) != out || l.DoRAFactor.DType() != dtype.F32):
			err = fmt.Errorf("DoRAFactor %s must be f32[%d], as Merge left it: %w", l.DoRAFactor, out, ErrBadInput)
		}
	}
	if err != nil {
		return fmt.Errorf("lora: Unmerge: %w", err)
	}
	rec.Barrier()
	if err := e.unmergeFrom(rec, p, l.DoRAFactor); err != nil {
		return err
	}
	if l.DoRAFactor != nil {
		rec.Hold(l.DoRAFactor) // the row step reads it until the recording completes
	}
	l.Merged, l.DoRAFactor = false, nil
	return nil
}

// MergedWeight records the merged weight of l into a new dense tensor
// [out, in] of the layer dtype, and the merged bias into a new [out] one
// (nil when the layer has no bias), leaving l unchanged: what PEFT's
// merge_and_unload leaves for a dense layer. An NF4 base is dequantized on
// the device first (quant.DequantizeOnDevice, the values the NF4 matmul
// uses), then merged, and stays dense (PEFT's 4-bit merge quantizes the
// result again; docs/MERGE.md). A layer without adapter, or already merged, gives
// copies of its base. The results are valid after rec.Submit; the caller
// releases them. Barriers and refusals are Merge's, except that NF4,
// merged and adapter-less layers are taken.
func (e *Engine) MergedWeight(rec *vk.Recorder, l *LoRALinear) (w, bias *vk.Tensor, err error) {
	if err := e.checkEngine(rec, l); err != nil {
		return nil, nil, fmt.Errorf("lora: MergedWeight: %w", err)
	}
	var p *Projection
	if l.Merged || (l.A == nil && l.B == nil) {
		cp := *l
		cp.Merged = true // the base alone
		p, err = getLoRAParameters(&cp)
	} else {
		p, err = e.mergeArgs(rec, l)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("lora: MergedWeight: %w", err)
	}
	// Once something is recorded on them, the recording releases them.
	fail := func(err error) (*vk.Tensor, *vk.Tensor, error) {
		for _, t := range []*vk.Tensor{w, bias} {
			if t != nil {
				rec.Hold(t)
			}
		}
		return nil, nil, err
	}
	out, in, _ := p.W.dims()
	d := p.W.mat().DType()
	if w, err = e.newOut("merged weight", d, out, in); err != nil {
		return nil, nil, err
	}
	if p.Bias != nil {
		if bias, err = e.newOut("merged bias", d, out); err != nil {
			return fail(err)
		}
	}
	rec.Barrier()
	if p.W.NF4 != nil {
		if err := quant.DequantizeOnDevice(e.dev, rec, p.W.NF4, w); err != nil {
			return fail(fmt.Errorf("lora: MergedWeight: %w", err))
		}
	} else if err := rec.Copy(w.Binding(), p.W.Dense.Binding()); err != nil {
		return fail(err)
	}
	if bias != nil {
		if err := rec.Copy(bias.Binding(), p.Bias.Binding()); err != nil {
			return fail(err)
		}
	}
	if !p.HasAdapter() {
		return w, bias, nil
	}
	rec.Barrier()
	dense := *p
	dense.W, dense.Bias = Weight{Dense: w}, bias
	if err := e.mergeInto(rec, &dense, w, nil, bias); err != nil {
		return fail(err)
	}
	return w, bias, nil
}

// checkEngine validates the arguments every merge function takes.
func (e *Engine) checkEngine(rec *vk.Recorder, l *LoRALinear) error {
	switch {
	case e == nil || rec == nil:
		return fmt.Errorf("engine or recorder is nil: %w", ErrBadInput)
	case l == nil:
		return fmt.Errorf("layer is nil: %w", ErrBadInput)
	case l.Disabled:
		return fmt.Errorf("the adapter is disabled (PEFT's disable_adapters): the layer computes its base alone, so there is nothing to merge: %w", ErrBadInput)
	}
	return nil
}

// mergeArgs validates l for Merge and Unmerge and returns its projection
// with the adapter, whatever l.Merged says.
func (e *Engine) mergeArgs(rec *vk.Recorder, l *LoRALinear) (*Projection, error) {
	if err := e.checkEngine(rec, l); err != nil {
		return nil, err
	}
	if l.A == nil && l.B == nil {
		return nil, fmt.Errorf("layer has no adapter (lora_A and lora_B are nil): nothing to merge: %w", ErrBadInput)
	}
	cp := *l
	cp.Merged, cp.Dropout = false, 0 // dropout is a training-time matter
	p, err := getLoRAParameters(&cp)
	if err != nil {
		return nil, err
	}
	if p.LoRABias != nil && p.Bias == nil {
		return nil, fmt.Errorf("lora_B bias %s without a base bias: PEFT refuses to merge it (\"the base layer has no bias\"): %w", p.LoRABias, ErrBadInput)
	}
	// The merge writes W and the bias while it reads the adapter.
	for _, dst := range []struct {
		name string
		t    *vk.Tensor
	}{{"base weight", p.W.Dense}, {"base bias", p.Bias}} {
		for _, src := range []struct {
			name string
			t    *vk.Tensor
		}{{"lora_A", p.A}, {"lora_B", p.B}, {"lora_B bias", p.LoRABias}, {"DoRA magnitude", p.Magnitude}} {
			if vk.Overlaps(dst.t, src.t) {
				return nil, fmt.Errorf("%s %s shares memory with %s %s: %w", dst.name, dst.t, src.name, src.t, ErrBadInput)
			}
		}
	}
	if vk.Overlaps(p.W.Dense, p.Bias) {
		return nil, fmt.Errorf("base weight %s shares memory with the base bias %s: %w", p.W.Dense, p.Bias, ErrBadInput)
	}
	return p, nil
}

// mergeInto records w = the merged weight of p (w holds W, dense, and is
// p.W.Dense or its copy) and bias += s·b_B. DoRA's c is written to keep
// when it is set (f32 [out], for Unmerge), else to a temporary. The caller
// recorded a barrier on whatever wrote w and bias.
func (e *Engine) mergeInto(rec *vk.Recorder, p *Projection, w, keep, bias *vk.Tensor) error {
	s := float32(p.Scale)
	if p.LoRABias != nil {
		if err := e.k.AddTo(rec, bias, p.LoRABias, s); err != nil {
			return err
		}
	}
	if p.Magnitude == nil {
		return e.k.Gemm(rec, kernels.Gemm{C: w, A: Dense(p.B), B: Dense(p.A), Alpha: s, Beta: 1})
	}
	out, r := w.Dim(0), p.A.Dim(0)
	wsq, aw, aa, err := e.doraInputs(rec, p, r, out)
	if err != nil {
		return err
	}
	ba, err := e.deltaWeight(rec, p)
	if err != nil {
		return err
	}
	rn, err := e.temp(rec, "DoRA 1/n", dtype.F32, out)
	if err != nil {
		return err
	}
	c := keep
	if c == nil {
		if c, err = e.temp(rec, "DoRA factor", dtype.F32, out); err != nil {
			return err
		}
	}
	rec.Barrier()
	if err := e.k.DoraNorm(rec, rn, c, wsq, aw, aa, p.B, p.Magnitude, s); err != nil {
		return err
	}
	rec.Barrier()
	return e.k.RowScale(rec, w, ba, c, 1, false)
}

// unmergeFrom records W = W' − s·B·A (DoRA: W'/c − s·B·A) into p's dense
// weight and bias −= s·b_B.
func (e *Engine) unmergeFrom(rec *vk.Recorder, p *Projection, c *vk.Tensor) error {
	s := float32(p.Scale)
	if p.LoRABias != nil {
		if err := e.k.AddTo(rec, p.Bias, p.LoRABias, -s); err != nil {
			return err
		}
	}
	w := p.W.Dense
	if c == nil {
		return e.k.Gemm(rec, kernels.Gemm{C: w, A: Dense(p.B), B: Dense(p.A), Alpha: -s, Beta: 1})
	}
	ba, err := e.deltaWeight(rec, p)
	if err != nil {
		return err
	}
	rec.Barrier()
	return e.k.RowScale(rec, w, ba, c, -1, true)
}

// deltaWeight records s·B·A (PEFT's get_delta_weight) into a held f32
// [out, in] temporary; the caller records a barrier before reading it.
func (e *Engine) deltaWeight(rec *vk.Recorder, p *Projection) (*vk.Tensor, error) {
	ba, err := e.temp(rec, "s·B·A", dtype.F32, p.B.Dim(0), p.A.Dim(1))
	if err != nil {
		return nil, err
	}
	return ba, e.k.Gemm(rec, kernels.Gemm{C: ba, A: Dense(p.B), B: Dense(p.A), Alpha: float32(p.Scale)})
}
