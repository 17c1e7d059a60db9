package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vklora/vklora/internal/term"
)

// progress prints the loss of each step with the rate and an ETA on one
// line: on a terminal redrawn in place (\r) at most every redraw, elsewhere
// (pipes, CI logs) a plain line at step 0, every tenth of the run and at
// the last step, so a log shows the curve without flooding.
type progress struct {
	w       io.Writer
	tty     bool
	now     func() time.Time
	steps   int
	start   time.Time
	warmAt  time.Time // when step warmSteps began: the rate is measured from it
	first   float64   // step 0's loss
	drawn   time.Time
	pending bool // tty: a line is on the screen without its newline
}

// redraw is the least time between two terminal redraws.
const redraw = 100 * time.Millisecond

func newProgress(w io.Writer) *progress {
	return &progress{w: w, tty: term.IsTerminal(w), now: time.Now}
}

func (p *progress) begin(steps int) {
	p.steps, p.start = steps, p.now()
	if warmSteps(steps) == 0 {
		p.warmAt = p.start
	}
}

// step reports the loss of step t (0-based), which has just finished.
func (p *progress) step(t int, loss float64) {
	now := p.now()
	if t == 0 {
		p.first = loss
	}
	if t+1 == warmSteps(p.steps) {
		p.warmAt = now
	}
	last := t+1 == p.steps
	line := p.line(t, loss, now)
	if p.tty {
		if last || now.Sub(p.drawn) >= redraw {
			fmt.Fprintf(p.w, "\r%-100s", line)
			p.drawn, p.pending = now, true
		}
		return
	}
	every := max(1, p.steps/10)
	if t == 0 || last || (t+1)%every == 0 {
		fmt.Fprintln(p.w, line)
	}
}

// line is "lorafit: step 120/200 loss 3.21e-04 (1/412 of step 0) 14.2 step/s ETA 6s".
func (p *progress) line(t int, loss float64, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "lorafit: step %d/%d loss %.3e", t+1, p.steps, loss)
	if t > 0 && loss > 0 {
		fmt.Fprintf(&b, " (1/%.3g of step 1)", p.first/loss)
	}
	if !p.warmAt.IsZero() && t+1 > warmSteps(p.steps) {
		done := t + 1 - warmSteps(p.steps)
		el := now.Sub(p.warmAt).Seconds()
		if done > 0 && el > 0 {
			rate := float64(done) / el
			fmt.Fprintf(&b, " %.3g step/s", rate)
			if left := p.steps - t - 1; left > 0 {
				fmt.Fprintf(&b, " ETA %s", duration(time.Duration(float64(left)/rate*float64(time.Second))))
			}
		}
	}
	fmt.Fprintf(&b, " (%s)", duration(now.Sub(p.start)))
	return b.String()
}

// end finishes a terminal line.
func (p *progress) end() {
	if p.pending {
		fmt.Fprintln(p.w)
		p.pending = false
	}
}

// duration prints d rounded for people: 950ms, 12s, 3m05s, 1h02m.
func duration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		s := int(d.Round(time.Second).Seconds())
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	m := int(d.Round(time.Minute).Minutes())
	return fmt.Sprintf("%dh%02dm", m/60, m%60)
}
