package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// progress draws a one-line bar on stderr while cases run, only when stderr
// is a terminal (never in pipes, files, CI logs or tests).
type progress struct {
	w     io.Writer
	on    bool
	total int
}

func newProgress(stderr io.Writer, total int) *progress {
	return &progress{w: stderr, on: isTerminal(stderr), total: total}
}

// isTerminal reports whether w is a character device (a tty), without a
// dependency on golang.org/x/term.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

const barWidth = 24

// step shows that case i (0-based) of total is running.
func (p *progress) step(i int, label string) {
	if !p.on {
		return
	}
	fill := barWidth * i / max(p.total, 1)
	fmt.Fprintf(p.w, "\r\033[K[%s%s] %d/%d %s", strings.Repeat("#", fill), strings.Repeat(".", barWidth-fill), i+1, p.total, label)
}

// clear erases the bar so a result line can be printed.
func (p *progress) clear() {
	if p.on {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func (p *progress) finish() { p.clear() }
