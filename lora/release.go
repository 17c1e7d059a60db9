package lora

// The layers hold their projections' tensors without owning them: a caller
// that built a layer from its own tensors releases them as it likes. These
// Release methods are for the caller that hands the tensors over: one call
// frees a projection's weight, adapter and bias, or all of a layer's.
// Each is idempotent (tensors shared between layers are freed once), and
// a released layer refuses Forward and Backward with ErrBadInput.

// Release frees the projection's base weight (dense or NF4), lora_A,
// lora_B and bias.
func (p *Projection) Release() {
	if p == nil {
		return
	}
	p.W.Dense.Release()
	p.W.NF4.Release()
	p.A.Release()
	p.B.Release()
	p.Bias.Release()
}

// Release frees the projection's tensors.
func (l *O) Release() {
	if l != nil {
		l.Proj.Release()
	}
}

// Release frees the three projections' tensors.
func (l *QKV) Release() {
	if l != nil {
		for _, p := range l.projs() {
			p.Release()
		}
	}
}

// Release frees the three projections' tensors.
func (l *MLP) Release() {
	if l != nil {
		for _, p := range l.projs() {
			p.Release()
		}
	}
}
