package ref

import "fmt"

// Proj is one LoRA projection (an nn.Linear with a PEFT adapter):
// W [Out, In] is the frozen base weight, A [R, In] is lora_A, B [Out, R] is
// lora_B and S the scale (alpha/R, or alpha/√R with rsLoRA). The adapter is
// absent when R == 0 or A == nil; B and S are then ignored. Bias [Out] is
// the frozen base bias, nil for none.
type Proj struct {
	W, A, B    []float64
	Out, In, R int
	S          float64
	Bias       []float64
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
}

// LinearForward returns Y = X·Wᵀ + s·(X·Aᵀ)·Bᵀ + bias, Y [m, p.Out], for
// X [m, p.In] (bias added to every row). Without an adapter Y = X·Wᵀ + bias.
func LinearForward(x []float64, m int, p *Proj) []float64 {
	p.check("LinearForward", "p")
	checkLen("LinearForward", "X", x, m*p.In)
	y := Matmul(x, p.W, m, p.Out, p.In, false, true)
	if p.HasAdapter() {
		u := Matmul(x, p.A, m, p.R, p.In, false, true)           // U = X·Aᵀ [m, R]
		MatmulAcc(y, u, p.B, m, p.Out, p.R, false, true, p.S, 1) // Y += s·U·Bᵀ
	}
	if p.Bias != nil {
		for i := 0; i < m; i++ {
			for j, b := range p.Bias {
				y[i*p.Out+j] += b
			}
		}
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
	if !p.HasAdapter() {
		return Grads{}
	}
	gb := Matmul(g, p.B, m, p.R, p.Out, false, false) // GB = G·B [m, R]
	u := Matmul(x, p.A, m, p.R, p.In, false, true)    // U = X·Aᵀ [m, R]
	gr := Grads{DA: make([]float64, p.R*p.In), DB: make([]float64, p.Out*p.R)}
	MatmulAcc(gr.DA, gb, x, p.R, p.In, m, true, false, p.S, 0) // dA = s·GBᵀ·X
	MatmulAcc(gr.DB, g, u, p.Out, p.R, m, true, false, p.S, 0) // dB = s·Gᵀ·U
	MatmulAcc(dX, gb, p.A, m, p.In, p.R, false, false, p.S, 1) // dX += s·GB·A
	return gr
}
