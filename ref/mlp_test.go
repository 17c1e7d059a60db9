package ref

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMLPBackwardFiniteDifference(t *testing.T) {
	rng := newRNG(30)
	// [m, H, I]: M = 1, odd sizes, I both below and above H.
	shapes := [][3]int{{1, 5, 3}, {3, 13, 7}, {2, 9, 33}}
	for _, act := range []Activation{SwiGLU, GEGLU, GEGLUTanh} {
		for _, sh := range shapes {
			for _, r := range []int{1, 7} {
				for si, s := range scales(r) {
					m, hd, id := sh[0], sh[1], sh[2]
					t.Run(fmt.Sprintf("%v_m%d_H%d_I%d_r%d_s%.3g", act, m, hd, id, r, s), func(t *testing.T) {
						ss := scales(r)
						gate := randProj(rng, id, hd, r, s)
						up := randProj(rng, id, hd, r, ss[(si+1)%3])
						down := randProj(rng, hd, id, r, ss[(si+2)%3])
						x := Random(rng, m*hd, 1)
						rr := Random(rng, m*hd, 1)
						loss := func() float64 {
							y, _, _ := MLPForward(x, m, gate, up, down, act)
							return dot(y, rr)
						}

						checkMLPGrads(t, x, rr, m, gate, up, down, act, loss)
					})
				}
			}
		}
	}
}

// checkMLPGrads compares MLPBackward's dX and each projection's dA and dB
// with finite differences of loss, and returns dX.
func checkMLPGrads(t *testing.T, x, rr []float64, m int, gate, up, down *Proj, act Activation, loss func() float64) []float64 {
	t.Helper()
	dX, dg, du, dd := MLPBackward(x, rr, m, gate, up, down, act)
	checkClose(t, "dX", dX, numGrad(x, loss), fdTol)
	for _, c := range []struct {
		name string
		p    *Proj
		g    Grads
	}{{"gate", gate, dg}, {"up", up, du}, {"down", down, dd}} {
		checkClose(t, c.name+".dA", c.g.DA, numGrad(c.p.A, loss), fdTol)
		checkClose(t, c.name+".dB", c.g.DB, numGrad(c.p.B, loss), fdTol)
	}
	return dX
}

// TestMLPBiasFiniteDifference: with biases on gate, up and down, e and g
// carry their biases into act(e)·g, so dX and every adapter gradient change;
// the backward (which recomputes e and g) must still match the numbers.
func TestMLPBiasFiniteDifference(t *testing.T) {
	rng := newRNG(32)
	const m, hd, id, r = 3, 13, 7, 3
	for _, act := range []Activation{SwiGLU, GEGLU, GEGLUTanh} {
		t.Run(act.String(), func(t *testing.T) {
			gate, up, down := randProj(rng, id, hd, r, 0.37), randProj(rng, id, hd, r, 2), randProj(rng, hd, id, r, 16/math.Sqrt(r))
			x, rr := Random(rng, m*hd, 1), Random(rng, m*hd, 1)
			dX0, _, _, _ := MLPBackward(x, rr, m, gate, up, down, act)
			gate.Bias, up.Bias, down.Bias = Random(rng, id, 1), Random(rng, id, 1), Random(rng, hd, 1)
			loss := func() float64 {
				y, _, _ := MLPForward(x, m, gate, up, down, act)
				return dot(y, rr)
			}
			dX := checkMLPGrads(t, x, rr, m, gate, up, down, act, loss)
			require.Greater(t, RelErr(dX, dX0), 1e-3, "the gate/up biases must reach dX through act(e)·g")
		})
	}
}

// TestMLPForwardComposition checks MLPForward against its definition written
// out with LinearForward and Act, and that e and g are the saved activations.
func TestMLPForwardComposition(t *testing.T) {
	rng := newRNG(31)
	const m, hd, id = 4, 11, 19
	gate, up, down := randProj(rng, id, hd, 7, 0.37), randProj(rng, id, hd, 0, 0), randProj(rng, hd, id, 1, 16)
	x := Random(rng, m*hd, 1)
	for _, act := range []Activation{SwiGLU, GEGLU, GEGLUTanh} {
		y, e, g := MLPForward(x, m, gate, up, down, act)
		require.Equal(t, LinearForward(x, m, gate), e)
		require.Equal(t, LinearForward(x, m, up), g)
		h := make([]float64, m*id)
		for i := range h {
			h[i] = Act(act, e[i]) * g[i]
		}
		require.Equal(t, LinearForward(h, m, down), y, act.String())
	}
}

// TestMLPActivationsDiffer guards against an activation silently mapped to
// another one: the three give different outputs on the same input.
func TestMLPActivationsDiffer(t *testing.T) {
	rng := newRNG(32)
	const m, hd, id = 3, 8, 12
	gate, up, down := randProj(rng, id, hd, 1, 2), randProj(rng, id, hd, 1, 2), randProj(rng, hd, id, 1, 2)
	x := Random(rng, m*hd, 1)
	ys := map[Activation][]float64{}
	for _, act := range []Activation{SwiGLU, GEGLU, GEGLUTanh} {
		ys[act], _, _ = MLPForward(x, m, gate, up, down, act)
	}
	require.Greater(t, RelErr(ys[GEGLU], ys[SwiGLU]), 1e-2)
	// The tanh form approximates erf GELU to ~1e-3 relative: close, not equal.
	d := RelErr(ys[GEGLUTanh], ys[GEGLU])
	require.True(t, d > 1e-7 && d < 1e-2, "tanh vs erf GELU rel err %g", d)
	require.False(t, math.IsInf(d, 0))
}

func TestMLPPanicsOnBadInput(t *testing.T) {
	rng := newRNG(33)
	gate, up, down := randProj(rng, 6, 4, 1, 1), randProj(rng, 6, 4, 1, 1), randProj(rng, 4, 5, 1, 1)
	require.PanicsWithValue(t, "ref: MLPForward: want gate and up [I, H] and down.In = I", func() {
		MLPForward(make([]float64, 4), 1, gate, up, down, SwiGLU)
	})
	down = randProj(rng, 4, 6, 1, 1)
	require.PanicsWithValue(t, "ref: MLPBackward: invalid activation Activation(0)", func() {
		MLPBackward(make([]float64, 4), make([]float64, 4), 1, gate, up, down, 0)
	})
}
