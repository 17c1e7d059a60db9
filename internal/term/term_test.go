package term

import (
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// A buffer and a pipe are not terminals; a character device is.
func TestIsTerminal(t *testing.T) {
	require.False(t, IsTerminal(&bytes.Buffer{}))
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	require.False(t, IsTerminal(w))
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer null.Close()
	require.True(t, IsTerminal(null))
}
