package activation

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNamesRoundTrip(t *testing.T) {
	want := map[Activation]string{SwiGLU: "swiglu", GEGLU: "geglu", GEGLUTanh: "geglu_tanh"}
	require.Len(t, All(), len(want))
	for _, a := range All() {
		require.Equal(t, want[a], a.String())
		require.True(t, a.Valid(), "%v", a)
		got, err := Parse(a.String())
		require.NoError(t, err)
		require.Equal(t, a, got)
	}
}

func TestZeroAndOutOfRangeAreInvalid(t *testing.T) {
	for _, a := range []Activation{0, -1, GEGLUTanh + 1} {
		require.False(t, a.Valid(), "%d", int(a))
	}
	require.Equal(t, "Activation(0)", Activation(0).String())
	require.Equal(t, "Activation(4)", Activation(4).String())
}

func TestParseRejects(t *testing.T) {
	// "gelu" is a hidden_act, not a conformance name: the two vocabularies
	// must not be mixed up.
	for _, name := range []string{"gelu", "silu", "SwiGLU", "", "geglu-tanh"} {
		_, err := Parse(name)
		require.Error(t, err, name)
		require.ErrorContains(t, err, `activation: unknown activation "`+name+`"`)
		require.ErrorContains(t, err, "(accepted: swiglu, geglu, geglu_tanh)")
	}
}

func TestFromHiddenAct(t *testing.T) {
	for name, want := range map[string]Activation{
		"silu": SwiGLU, "swish": SwiGLU,
		"gelu": GEGLU, "gelu_python": GEGLU,
		"gelu_pytorch_tanh": GEGLUTanh, "gelu_new": GEGLUTanh, "gelu_fast": GEGLUTanh, "gelu_accurate": GEGLUTanh,
	} {
		got, err := FromHiddenAct(name)
		require.NoError(t, err, name)
		require.Equal(t, want, got, name)
	}
}

func TestFromHiddenActRejects(t *testing.T) {
	// quick_gelu and gelu_10 are different functions; "swiglu" is our name,
	// not transformers'; names are case-sensitive there.
	for _, name := range []string{"quick_gelu", "gelu_10", "relu", "SiLU", "swiglu", ""} {
		_, err := FromHiddenAct(name)
		require.Error(t, err, name)
		require.ErrorContains(t, err, `activation: unsupported hidden_act "`+name+`"`)
		require.ErrorContains(t, err, "silu, swish, gelu, gelu_python, gelu_pytorch_tanh, gelu_new, gelu_fast, gelu_accurate")
	}
}
