package ref

// MLPForward runs the gated MLP on X [m, H]:
//
//	e = lin_gate(X) [m, I];  g = lin_up(X) [m, I];  h = act(e) ⊙ g;  Y = lin_down(h) [m, down.Out]
//
// with gate and up [I, H] (Out = I, In = H) and down.In = I (down.Out is H in
// a transformer). It returns Y and the saved e and g.
//
// Everything is exact float64: the GPU rounds f = act(e) to the storage
// dtype before multiplying by g, as HF models do; the tolerances of the
// conformance vectors cover the difference.
func MLPForward(x []float64, m int, gate, up, down *Proj, act Activation) (y, e, g []float64) {
	checkMLP("MLPForward", gate, up, down, act)
	e, g, h := mlpHidden(x, m, gate, up, act)
	return LinearForward(h, m, down), e, g
}

// mlpHidden returns e = lin_gate(X), g = lin_up(X) and h = act(e) ⊙ g, all [m, I].
func mlpHidden(x []float64, m int, gate, up *Proj, act Activation) (e, g, h []float64) {
	e = LinearForward(x, m, gate)
	g = LinearForward(x, m, up)
	h = make([]float64, len(e))
	for i := range h {
		h[i] = Act(act, e[i]) * g[i]
	}
	return e, g, h
}

// MLPBackward returns the gradients of MLPForward for the upstream gradient
// gy = dL/dY [m, down.Out] and the input X [m, H]; e, g and h are recomputed.
// Per docs/LORA-MATH.md:
//
//	dh = G·Wd + sd·(G·Bd)·Ad;  f = act(e);  h = f·g;  dg = dh·f;  de = dh·g·act′(e)
//	dAd = sd·(G·Bd)ᵀ·h;   dBd = sd·Gᵀ·(h·Adᵀ)
//	dAu = su·(dg·Bu)ᵀ·X;  dBu = su·dgᵀ·(X·Auᵀ)
//	dAg = sg·(de·Bg)ᵀ·X;  dBg = sg·deᵀ·(X·Agᵀ)
//	dX  = dg·Wu + su·(dg·Bu)·Au + de·Wg + sg·(de·Bg)·Ag      [m, H]
func MLPBackward(x, gy []float64, m int, gate, up, down *Proj, act Activation) (dX []float64, dGate, dUp, dDown Grads) {
	checkMLP("MLPBackward", gate, up, down, act)
	e, g, h := mlpHidden(x, m, gate, up, act)
	dh, dDown := LinearBackward(h, gy, m, down)
	de := make([]float64, len(e))
	dg := make([]float64, len(e))
	for i := range dh {
		dg[i] = dh[i] * Act(act, e[i])
		de[i] = dh[i] * g[i] * ActGrad(act, e[i])
	}
	dX = make([]float64, m*gate.In)
	dUp = linearBackwardAcc(dX, x, dg, m, up, 0, "MLPBackward")
	dGate = linearBackwardAcc(dX, x, de, m, gate, 1, "MLPBackward")
	return dX, dGate, dUp, dDown
}

func checkMLP(fn string, gate, up, down *Proj, act Activation) {
	gate.check(fn, "gate")
	up.check(fn, "up")
	down.check(fn, "down")
	if up.In != gate.In || up.Out != gate.Out || down.In != gate.Out {
		panic("ref: " + fn + ": want gate and up [I, H] and down.In = I")
	}
	if !act.Valid() {
		panic("ref: " + fn + ": invalid activation " + act.String())
	}
}
