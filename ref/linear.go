package ref

import (
	"fmt"
	"math"
)

// Proj is one LoRA projection (an nn.Linear with a PEFT adapter):
// W [Out, In] is the frozen base weight, A [R, In] is lora_A, B [Out, R] is
// lora_B and S the scale (alpha/R, or alpha/√R with rsLoRA). The adapter is
// absent when R == 0 or A == nil; B and S are then ignored. Bias [Out] is
// the frozen base bias, nil for none.
//
// PEFT's extensions (nil or false: off):
//   - LoRABias [Out]: lora_B's bias; Y gains S·LoRABias.
//   - Magnitude [Out]: DoRA's m, with the detached row norm of W + S·B·A,
//     computed here from that explicit matrix.
//   - Mask [m, In] with P: the LoRA branch's input is X ⊙ Mask / (1 − P).
//   - BiasTrainable: the backward returns the base bias's gradient.
type Proj struct {
	W, A, B    []float64
	Out, In, R int
	S          float64
	Bias       []float64

	LoRABias, Magnitude []float64
	Mask                []float64
	P                   float64
	BiasTrainable       bool
}

// HasAdapter reports whether p carries a LoRA pair.
func (p *Proj) HasAdapter() bool { return p.R > 0 && p.A != nil }

// check panics unless the slices of p match its dimensions.
func (p *Proj) check(fn, name string) {
	if p == nil {
		panic(fmt.Sprintf("ref: %s: projection %s is nil", fn, name))
	}
	checkDims(fn, p.Out, p.In, p.R)
	checkLen(fn, name+".W", p.W, p.Out*p.In)
	if p.HasAdapter() {
		checkLen(fn, name+".A", p.A, p.R*p.In)
		checkLen(fn, name+".B", p.B, p.Out*p.R)
	}
	if p.Bias != nil {
		checkLen(fn, name+".Bias", p.Bias, p.Out)
	}
}

// Grads are the gradients of one projection's adapter: DA [R, In] and
// DB [Out, R]; both nil when the adapter is absent.
type Grads struct {
	DA, DB []float64
	// DLoRABias, DMagnitude and DBias are set where the projection has a
	// lora_B bias, DoRA, or a trainable base bias.
	DLoRABias, DMagnitude, DBias []float64
}

// dropped is the LoRA branch's input: X ⊙ Mask / (1 − P), or X.
func (p *Proj) dropped(x []float64) []float64 {
	if p.Mask == nil {
		return x
	}
	checkLen("dropout", "Mask", p.Mask, len(x))
	xd := make([]float64, len(x))
	for i, v := range x {
		xd[i] = v * p.Mask[i] / (1 - p.P)
	}
	return xd
}

// DoRANorms returns ‖W + S·B·A‖₂ of each output row of p (DoRA's n),
// from the explicit [Out, In] matrix.
func DoRANorms(p *Proj) []float64 {
	v := append([]float64(nil), p.W...)
	MatmulAcc(v, p.B, p.A, p.Out, p.In, p.R, false, false, p.S, 1)
	n := make([]float64, p.Out)
	for o := range n {
		var n2 float64
		for _, w := range v[o*p.In : (o+1)*p.In] {
			n2 += w * w
		}
		n[o] = math.Sqrt(n2)
	}
	return n
}

// Merged is p's merged weight [Out, In] and bias, what merging the adapter
// into the base gives: W + S·B·A, with DoRA c ⊙ (W + S·B·A) for c = m/‖W +
// S·B·A‖ per row, and b + S·b_B (nil without a base bias).
func Merged(p *Proj) (w, bias []float64) {
	w = append([]float64(nil), p.W...)
	if p.HasAdapter() {
		MatmulAcc(w, p.B, p.A, p.Out, p.In, p.R, false, false, p.S, 1)
	}
	if p.Magnitude != nil {
		c := p.doraScale()
		for i := range w {
			w[i] *= c[i/p.In]
		}
	}
	if p.Bias != nil {
		bias = append([]float64(nil), p.Bias...)
		if p.LoRABias != nil {
			for o := range bias {
				bias[o] += p.S * p.LoRABias[o]
			}
		}
	}
	return w, bias
}

// doraScale is c = m / ‖W + S·B·A‖ per output row.
func (p *Proj) doraScale() []float64 {
	c := DoRANorms(p)
	for o, n := range c {
		c[o] = p.Magnitude[o] / n
	}
	return c
}

func addRows(y, b []float64, s float64) {
	for i := range y {
		y[i] += s * b[i%len(b)]
	}
}

func colSums(g []float64, n int) []float64 {
	out := make([]float64, n)
	for i, v := range g {
		out[i%n] += v
	}
	return out
}

// LinearForward returns Y = X·Wᵀ + s·(X·Aᵀ)·Bᵀ + bias, Y [m, p.Out], for
// X [m, p.In] (bias added to every row). Without an adapter Y = X·Wᵀ + bias.
func LinearForward(x []float64, m int, p *Proj) []float64 {
	p.check("LinearForward", "p")
	checkLen("LinearForward", "X", x, m*p.In)
	y := Matmul(x, p.W, m, p.Out, p.In, false, true)
	if p.HasAdapter() {
		xd := p.dropped(x)
		u := Matmul(xd, p.A, m, p.R, p.In, false, true) // U = Xd·Aᵀ [m, R]
		l := Matmul(u, p.B, m, p.Out, p.R, false, true) // U·Bᵀ
		if p.LoRABias != nil {
			addRows(l, p.LoRABias, 1)
		}
		if p.Magnitude == nil {
			for i := range y {
				y[i] += p.S * l[i]
			}
		} else {
			// PEFT: Y = X·Wᵀ + (c − 1)⊙(Xd·Wᵀ) + c⊙s·l (+ bias below).
			c := p.doraScale()
			base := Matmul(xd, p.W, m, p.Out, p.In, false, true)
			for i := range y {
				o := i % p.Out
				y[i] += (c[o]-1)*base[i] + c[o]*p.S*l[i]
			}
		}
	}
	if p.Bias != nil {
		addRows(y, p.Bias, 1)
	}
	return y
}

// LinearBackward returns the gradients of LinearForward for the upstream
// gradient G = dL/dY [m, p.Out] and the input X [m, p.In]; W and the bias
// are frozen (the bias has no gradient here and does not enter dX):
//
//	GB = G·B [m, R];  dA = s·GBᵀ·X [R, In];  dB = s·Gᵀ·(X·Aᵀ) [Out, R]
//	dX = G·W + s·GB·A [m, In]
func LinearBackward(x, g []float64, m int, p *Proj) (dX []float64, gr Grads) {
	dX = make([]float64, m*p.In)
	gr = linearBackwardAcc(dX, x, g, m, p, 0, "LinearBackward")
	return dX, gr
}

// linearBackwardAcc is LinearBackward that accumulates into dX:
// dX = G·W + s·GB·A + beta·dX. QKV and MLP sum several projections' dX
// this way.
func linearBackwardAcc(dX, x, g []float64, m int, p *Proj, beta float64, fn string) Grads {
	p.check(fn, "p")
	checkLen(fn, "X", x, m*p.In)
	checkLen(fn, "G", g, m*p.Out)
	checkLen(fn, "dX", dX, m*p.In)
	MatmulAcc(dX, g, p.W, m, p.In, p.Out, false, false, 1, beta) // dX = G·W + beta·dX
	var gr Grads
	if p.BiasTrainable {
		gr.DBias = colSums(g, p.Out)
	}
	if !p.HasAdapter() {
		return gr
	}
	xd := p.dropped(x)
	u := Matmul(xd, p.A, m, p.R, p.In, false, true) // U = Xd·Aᵀ [m, R]
	gc := g                                         // the LoRA branch's upstream gradient
	var tx []float64                                // what flows back through the dropout
	if p.Magnitude != nil {
		c := p.doraScale()
		gc = make([]float64, len(g))
		gm1 := make([]float64, len(g))
		for i, v := range g {
			gc[i], gm1[i] = v*c[i%p.Out], v*(c[i%p.Out]-1)
		}
		// dm_o = Σ G·(Xd·Wᵀ + s·U·Bᵀ)_o / n_o, with n = m/c detached.
		z := Matmul(xd, p.W, m, p.Out, p.In, false, true)
		MatmulAcc(z, u, p.B, m, p.Out, p.R, false, true, p.S, 1)
		gr.DMagnitude = make([]float64, p.Out)
		for i, v := range g {
			o := i % p.Out
			gr.DMagnitude[o] += v * z[i] * c[o] / p.Magnitude[o]
		}
		tx = Matmul(gm1, p.W, m, p.In, p.Out, false, false) // (G⊙(c−1))·W
	}
	if p.LoRABias != nil {
		gr.DLoRABias = colSums(gc, p.Out)
		for i := range gr.DLoRABias {
			gr.DLoRABias[i] *= p.S
		}
	}
	gb := Matmul(gc, p.B, m, p.R, p.Out, false, false) // GB = Gc·B [m, R]
	gr.DA, gr.DB = make([]float64, p.R*p.In), make([]float64, p.Out*p.R)
	MatmulAcc(gr.DA, gb, xd, p.R, p.In, m, true, false, p.S, 0) // dA = s·GBᵀ·Xd
	MatmulAcc(gr.DB, gc, u, p.Out, p.R, m, true, false, p.S, 0) // dB = s·Gcᵀ·U
	if tx == nil {
		tx = make([]float64, m*p.In)
	}
	MatmulAcc(tx, gb, p.A, m, p.In, p.R, false, false, p.S, 1) // + s·GB·A
	for i, v := range tx {
		if p.Mask != nil {
			v *= p.Mask[i] / (1 - p.P)
		}
		dX[i] += v
	}
	return gr
}
