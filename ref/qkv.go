package ref

// QKVForward applies the projections q, k and v to the same X [m, in]
// (q.In == k.In == v.In == in) and returns Q [m, q.Out], K [m, k.Out] and
// V [m, v.Out]. With grouped-query attention k.Out and v.Out are smaller
// than q.Out.
func QKVForward(x []float64, m int, q, k, v *Proj) (Q, K, V []float64) {
	checkQKV("QKVForward", q, k, v)
	return LinearForward(x, m, q), LinearForward(x, m, k), LinearForward(x, m, v)
}

// QKVBackward returns the gradients of QKVForward for the upstream gradients
// gq [m, q.Out], gk [m, k.Out], gv [m, v.Out]. The three projections share
// X [m, in], so dX [m, in] is one sum:
//
//	dX = Gq·Wq + Gk·Wk + Gv·Wv + Σ_p s_p·(G_p·B_p)·A_p
//
// and dq, dk, dv hold each projection's dA, dB as in LinearBackward.
func QKVBackward(x, gq, gk, gv []float64, m int, q, k, v *Proj) (dX []float64, dq, dk, dv Grads) {
	checkQKV("QKVBackward", q, k, v)
	dX = make([]float64, m*q.In)
	dq = linearBackwardAcc(dX, x, gq, m, q, 0, "QKVBackward")
	dk = linearBackwardAcc(dX, x, gk, m, k, 1, "QKVBackward")
	dv = linearBackwardAcc(dX, x, gv, m, v, 1, "QKVBackward")
	return dX, dq, dk, dv
}

func checkQKV(fn string, q, k, v *Proj) {
	q.check(fn, "q")
	k.check(fn, "k")
	v.check(fn, "v")
	if k.In != q.In || v.In != q.In {
		panic("ref: " + fn + ": q, k and v must have the same In")
	}
}
