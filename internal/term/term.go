package term

import (
	"io"
	"os"
)

// IsTerminal reports whether w is a character device (a tty; /dev/null is
// one too, and nothing is lost by redrawing there).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
