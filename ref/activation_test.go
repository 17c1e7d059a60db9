package ref

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/activation"
)

var allActs = activation.All()

func TestActKnownValues(t *testing.T) {
	for _, c := range []struct {
		act     Activation
		e, want float64
	}{
		{SwiGLU, 1, 0.7310585786300049}, // σ(1)
		{SwiGLU, -1, -0.2689414213699951},
		{SwiGLU, 0, 0},
		{GEGLU, 1, 0.8413447460685429}, // Φ(1)
		{GEGLU, -1, -0.15865525393145707},
		{GEGLU, 0, 0},
		{GEGLUTanh, 1, 0.8411919906082768},
		{GEGLUTanh, -1, -0.15880800939172324},
		{GEGLUTanh, 0, 0},
		// Far tails, where 1 + erf and 1 + tanh cancel: -10·Φ(-10) and the
		// tanh form at -6 (mpmath, 30 digits).
		{GEGLU, -10, -7.6198530241605260659733432516e-23},
		{GEGLUTanh, -6, -8.43964670076231319090717225121e-11},
		{SwiGLU, -40, -40 / (1 + math.Exp(40))},
	} {
		got := Act(c.act, c.e)
		require.InDelta(t, c.want, got, 1e-13*math.Abs(c.want), "%v(%g)", c.act, c.e)
	}
}

// TestActMatchesLiteralFormula compares the cancellation-free forms used by
// Act and ActGrad with the formulas exactly as docs/LORA-MATH.md writes them,
// where those are accurate (|e| ≤ 4).
func TestActMatchesLiteralFormula(t *testing.T) {
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	c := math.Sqrt(2 / math.Pi)
	lit := map[Activation][2]func(e float64) float64{
		SwiGLU: {
			func(e float64) float64 { return e * sig(e) },
			func(e float64) float64 { return sig(e) * (1 + e*(1-sig(e))) },
		},
		GEGLU: {
			func(e float64) float64 { return 0.5 * e * (1 + math.Erf(e/math.Sqrt2)) },
			func(e float64) float64 {
				return 0.5*(1+math.Erf(e/math.Sqrt2)) + e*math.Exp(-e*e/2)*0.3989422804014327
			},
		},
		GEGLUTanh: {
			func(e float64) float64 { return 0.5 * e * (1 + math.Tanh(c*(e+0.044715*e*e*e))) },
			func(e float64) float64 {
				th := math.Tanh(c * (e + 0.044715*e*e*e))
				return 0.5*(1+th) + 0.5*e*(1-th*th)*c*(1+3*0.044715*e*e)
			},
		},
	}
	for _, act := range allActs {
		for e := -4.0; e <= 4; e += 0.125 {
			require.InDelta(t, lit[act][0](e), Act(act, e), 1e-14, "%v(%g)", act, e)
			require.InDelta(t, lit[act][1](e), ActGrad(act, e), 1e-14, "%v'(%g)", act, e)
		}
	}
}

func TestActGradFiniteDifference(t *testing.T) {
	const h = 1e-5
	es := []float64{-40, -30, -10, -6, -3, -1.5, -1, -0.5, -1e-3, 0, 1e-3, 0.3, 0.5, 1, 1.7, 3, 6, 10, 30, 40}
	for _, act := range allActs {
		require.InDelta(t, 0.5, ActGrad(act, 0), 1e-16, "%v'(0)", act)
		for _, e := range es {
			fd := (Act(act, e+h) - Act(act, e-h)) / (2 * h)
			got := ActGrad(act, e)
			require.False(t, math.IsNaN(got) || math.IsInf(got, 0), "%v'(%g) = %g", act, e, got)
			require.InDelta(t, fd, got, 1e-8*(1+math.Abs(e)), "%v'(%g)", act, e)
		}
	}
}

func TestActPanicsOnInvalid(t *testing.T) {
	require.PanicsWithValue(t, "ref: Act: invalid activation Activation(0)", func() { Act(0, 1) })
	require.PanicsWithValue(t, "ref: ActGrad: invalid activation Activation(7)", func() { ActGrad(Activation(7), 1) })
}

// TestGELUFastIsTheTanhForm backs activation.FromHiddenAct's mapping of HF
// "gelu_fast" (0.5·e·(1 + tanh(0.7978845608·e·(1 + 0.044715·e²)))) to
// GEGLUTanh.
func TestGELUFastIsTheTanhForm(t *testing.T) {
	for e := -8.0; e <= 8; e += 0.25 {
		fast := 0.5 * e * (1 + math.Tanh(e*0.7978845608*(1+0.044715*e*e)))
		require.InDelta(t, fast, Act(GEGLUTanh, e), 1e-10*(1+math.Abs(e)), "e=%g", e)
	}
}
