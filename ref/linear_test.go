package ref

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// linearShapes are [m, in, out]: M = 1, a single element, odd sizes and
// sizes on either side of 64.
var linearShapes = [][3]int{{1, 1, 1}, {1, 13, 7}, {5, 7, 13}, {3, 64, 129}}

func TestLinearBackwardFiniteDifference(t *testing.T) {
	rng := newRNG(10)
	for _, sh := range linearShapes {
		for _, r := range []int{1, 7} {
			for _, s := range scales(r) {
				m, in, out := sh[0], sh[1], sh[2]
				t.Run(fmt.Sprintf("m%d_in%d_out%d_r%d_s%.3g", m, in, out, r, s), func(t *testing.T) {
					p := randProj(rng, out, in, r, s)
					x := Random(rng, m*in, 1)
					rr := Random(rng, m*out, 1) // L = Σ Y·R, so G = R
					loss := func() float64 { return dot(LinearForward(x, m, p), rr) }

					dX, gr := LinearBackward(x, rr, m, p)
					checkClose(t, "dX", dX, numGrad(x, loss), fdTol)
					checkClose(t, "dA", gr.DA, numGrad(p.A, loss), fdTol)
					checkClose(t, "dB", gr.DB, numGrad(p.B, loss), fdTol)
				})
			}
		}
	}
}

// TestGradCheckCatchesMissingScale makes sure the finite-difference check
// has teeth: a dA without the factor s (the bug that hid for 13 months in a
// fused QKV backward) must fail it.
func TestGradCheckCatchesMissingScale(t *testing.T) {
	rng := newRNG(11)
	const m, in, out, r = 3, 13, 7, 7
	p := randProj(rng, out, in, r, 2.0)
	x, rr := Random(rng, m*in, 1), Random(rng, m*out, 1)
	_, gr := LinearBackward(x, rr, m, p)
	wrong := make([]float64, len(gr.DA))
	for i, v := range gr.DA {
		wrong[i] = v / p.S
	}
	num := numGrad(p.A, func() float64 { return dot(LinearForward(x, m, p), rr) })
	require.Greater(t, RelErr(wrong, num), 100*fdTol)
	require.Less(t, RelErr(gr.DA, num), fdTol)
}

// TestLinearByHand checks a case small enough to work out on paper:
// W = [[1 2] [3 4]], A = [[1 1]], B = [[1] [2]], s = 0.5, X = [[1 2]], G = [[1 1]].
func TestLinearByHand(t *testing.T) {
	p := &Proj{W: []float64{1, 2, 3, 4}, A: []float64{1, 1}, B: []float64{1, 2}, Out: 2, In: 2, R: 1, S: 0.5}
	x := []float64{1, 2}
	// X·Wᵀ = [5 11]; X·Aᵀ = 3; s·3·Bᵀ = [1.5 3].
	require.Equal(t, []float64{6.5, 14}, LinearForward(x, 1, p))
	dX, gr := LinearBackward(x, []float64{1, 1}, 1, p)
	// GB = 3; dA = 0.5·3·X; dB = 0.5·Gᵀ·3; dX = G·W + 0.5·3·A = [4 6] + [1.5 1.5].
	require.Equal(t, []float64{1.5, 3}, gr.DA)
	require.Equal(t, []float64{1.5, 1.5}, gr.DB)
	require.Equal(t, []float64{5.5, 7.5}, dX)
}

func TestLinearWithoutAdapter(t *testing.T) {
	rng := newRNG(12)
	const m, in, out = 5, 13, 7
	full := randProj(rng, out, in, 7, 2.0)
	x, g := Random(rng, m*in, 1), Random(rng, m*out, 1)
	wantY := naiveMatmul(x, full.W, m, out, in, false, true)
	wantDX := naiveMatmul(g, full.W, m, in, out, false, false)
	for name, p := range map[string]*Proj{
		"nil A and B": {W: full.W, Out: out, In: in, R: 7, S: 2},
		"R = 0":       {W: full.W, A: full.A, B: full.B, Out: out, In: in, S: 2},
	} {
		require.False(t, p.HasAdapter(), name)
		checkClose(t, name+" Y", LinearForward(x, m, p), wantY, 1e-14)
		dX, gr := LinearBackward(x, g, m, p)
		checkClose(t, name+" dX", dX, wantDX, 1e-14)
		require.Nil(t, gr.DA, name)
		require.Nil(t, gr.DB, name)
	}
}

func TestLinearDoesNotWriteInputs(t *testing.T) {
	rng := newRNG(13)
	const m, in, out = 3, 7, 5
	p := randProj(rng, out, in, 1, 0.37)
	x, g := Random(rng, m*in, 1), Random(rng, m*out, 1)
	x0, g0, a0 := append([]float64(nil), x...), append([]float64(nil), g...), append([]float64(nil), p.A...)
	LinearForward(x, m, p)
	LinearBackward(x, g, m, p)
	require.Equal(t, x0, x)
	require.Equal(t, g0, g)
	require.Equal(t, a0, p.A)
}

func TestLinearPanicsOnBadShapes(t *testing.T) {
	p := &Proj{W: make([]float64, 6), A: make([]float64, 3), B: make([]float64, 1), Out: 2, In: 3, R: 1, S: 1}
	require.PanicsWithValue(t, "ref: LinearForward: len(p.B) = 1, want 2", func() { LinearForward(make([]float64, 3), 1, p) })
	p.B = make([]float64, 2)
	require.PanicsWithValue(t, "ref: LinearBackward: len(G) = 3, want 2", func() {
		LinearBackward(make([]float64, 3), make([]float64, 3), 1, p)
	})
}

// TestLinearBias: the bias is added to every row (dL/dbias = Σ_rows G, by
// finite differences), and it changes neither dX nor the adapter gradients.
func TestLinearBias(t *testing.T) {
	p := &Proj{W: []float64{1, 2, 3, 4}, A: []float64{1, 1}, B: []float64{1, 2}, Out: 2, In: 2, R: 1, S: 0.5,
		Bias: []float64{0.25, -1}}
	require.Equal(t, []float64{6.75, 13, 6.75, 13}, LinearForward([]float64{1, 2, 1, 2}, 2, p))

	rng := newRNG(14)
	for _, sh := range linearShapes {
		m, in, out := sh[0], sh[1], sh[2]
		for _, r := range []int{0, 7} {
			t.Run(fmt.Sprintf("m%d_in%d_out%d_r%d", m, in, out, r), func(t *testing.T) {
				p := randProj(rng, out, in, r, 0.37)
				x, rr := Random(rng, m*in, 1), Random(rng, m*out, 1)
				dX0, gr0 := LinearBackward(x, rr, m, p)
				y0 := LinearForward(x, m, p)
				p.Bias = Random(rng, out, 1)
				y := LinearForward(x, m, p)
				for i := range y {
					require.InDelta(t, y0[i]+p.Bias[i%out], y[i], 1e-12)
				}
				dX, gr := LinearBackward(x, rr, m, p)
				require.Equal(t, dX0, dX)
				require.Equal(t, gr0, gr)
				colSum := make([]float64, out)
				for i, g := range rr {
					colSum[i%out] += g
				}
				loss := func() float64 { return dot(LinearForward(x, m, p), rr) }
				checkClose(t, "dbias", numGrad(p.Bias, loss), colSum, fdTol)
				checkClose(t, "dX", dX, numGrad(x, loss), fdTol)
			})
		}
	}
	bad := &Proj{W: make([]float64, 6), Out: 2, In: 3, Bias: make([]float64, 3)}
	require.PanicsWithValue(t, "ref: LinearForward: len(p.Bias) = 3, want 2", func() { LinearForward(make([]float64, 3), 1, bad) })
}

// Merged by hand: W + s·B·A, DoRA's row scaling m/‖W + s·B·A‖, and the
// bias b + s·b_B; no adapter leaves W; no base bias, no merged bias.
func TestMergedByHand(t *testing.T) {
	p := &Proj{Out: 2, In: 2, R: 1, S: 0.5,
		W: []float64{1, 0, 0, 1}, A: []float64{2, 4}, B: []float64{1, -1},
		Bias: []float64{1, 2}, LoRABias: []float64{4, 6}}
	w, b := Merged(p)
	require.Equal(t, []float64{2, 2, -1, -1}, w) // W + 0.5·[1 -1]ᵀ·[2 4]
	require.Equal(t, []float64{3, 5}, b)
	p.Magnitude = []float64{4, 3} // rows' norms: √8 and √2
	w, _ = Merged(p)
	require.InDeltaSlice(t, []float64{2 * 4 / math.Sqrt(8), 2 * 4 / math.Sqrt(8), -3 / math.Sqrt(2), -3 / math.Sqrt(2)}, w, 1e-12)
	p.Magnitude, p.Bias, p.R, p.A, p.B = nil, nil, 0, nil, nil
	w, b = Merged(p)
	require.Equal(t, p.W, w)
	require.Nil(t, b)
}
