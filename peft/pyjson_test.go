package peft

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWritePy: the layout of Python's json.dumps(indent=2) with
// ensure_ascii, checked against CPython 3's output for the same input.
func TestWritePy(t *testing.T) {
	v, err := parseJSON([]byte(`{"b":[1,"x",[]],"a":{},"c":{"k":null,"é":true},"d":"\"\\\n\t\u0001\u007f\u2028😀<&"}`))
	require.NoError(t, err)
	var b bytes.Buffer
	writePy(&b, v, 0)
	want := `{
  "b": [
    1,
    "x",
    []
  ],
  "a": {},
  "c": {
    "k": null,
    "\u00e9": true
  },
  "d": "\"\\\n\t\u0001\u007f\u2028\ud83d\ude00<&"
}`
	require.Equal(t, want, b.String())
}

func TestPyFloat(t *testing.T) {
	for f, want := range map[float64]string{
		0: "0.0", 0.05: "0.05", 0.1: "0.1", 1e-05: "1e-05", 1.5e-05: "1.5e-05", 0.0001: "0.0001",
		123: "123.0", 1e16: "1e+16", 1234567890123456: "1234567890123456.0", -2.5: "-2.5",
	} {
		require.Equal(t, json.Number(want), pyFloat(f), "%v", f)
	}
	require.Equal(t, json.Number("16"), pyNumber(16))
	require.Equal(t, json.Number("11.313708498984761"), pyNumber(8*1.4142135623730951))
}

func TestParseJSONErrors(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":1,"a":2}`:                  `duplicate key "a"`,
		`{"a":1} x`:                      "data after the JSON value",
		`{"a":`:                          "unexpected EOF",
		"{\"a\":\"\xff\"}":               "not valid UTF-8",
		strings.Repeat("[", 100):         "nested deeper than 64 levels",
		`{"a":NaN}`:                      "invalid character",
		`{"rank_pattern":{"x":1,"x":2}}`: `duplicate key "x"`,
	} {
		_, err := parseJSON([]byte(in))
		require.ErrorContains(t, err, want, in)
	}
}
