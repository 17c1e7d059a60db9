package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/vklora/vklora/internal/term"
)

// progress reports on stderr which case is running, its phase (setup,
// validate, warm-up, timing, profile), the repeats done of the total and an
// ETA for them. On a terminal it is one line redrawn in place (\r) and kept
// current every second; elsewhere (pipes, files, CI logs) a plain line at
// most every plainEvery, so a long case still shows life without flooding
// the log. Everything else printed while it runs goes through do, so that
// lines never interleave.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	every    time.Duration // plain mode: least time between two lines
	now      func() time.Time
	st       progressState
	lastLine time.Time // plain mode: when the last line was printed (or the start)
	drawn    bool      // tty mode: a line is on the screen
	stop     chan struct{}
	stopped  chan struct{}
}

// plainEvery is the least time between two plain progress lines.
const plainEvery = 10 * time.Second

// progressState is what the progress line shows.
type progressState struct {
	i, total   int    // case i (0-based) of total
	label      string // the case
	phase      string // "" before the case's first phase
	done, n    int    // of the phase; n = 0: not counted against a total
	unit       string // of done: "reps", "runs"
	start      time.Time
	caseStart  time.Time
	phaseStart time.Time
}

func newProgress(stderr io.Writer, total int) *progress {
	return newProgressClock(stderr, total, term.IsTerminal(stderr), plainEvery, time.Now)
}

// newProgressClock is newProgress with the mode and the clock chosen, for
// tests.
func newProgressClock(w io.Writer, total int, tty bool, every time.Duration, now func() time.Time) *progress {
	t := now()
	return &progress{w: w, tty: tty, every: every, now: now, lastLine: t,
		st: progressState{total: total, start: t, caseStart: t, phaseStart: t}}
}

// start keeps the line current from a goroutine (every second: the ETA and
// the elapsed times move, and plain mode prints during long phases that
// report nothing); finish stops it.
func (p *progress) start() {
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.stopped)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.update()
			}
		}
	}()
}

// startCase shows that case i (0-based) is running.
func (p *progress) startCase(i int, label string) {
	p.mu.Lock()
	t := p.now()
	p.st.i, p.st.label, p.st.phase, p.st.done, p.st.n, p.st.unit = i, label, "", 0, 0, ""
	p.st.caseStart, p.st.phaseStart = t, t
	p.mu.Unlock()
	p.update()
}

// phase starts a phase of the current case.
func (p *progress) phase(name string) { p.count(name, 0, 0, "") }

// count reports done of n (n = 0: no total) in phase name, counted in unit.
// A new phase restarts the phase clock the ETA is measured on.
func (p *progress) count(name string, done, n int, unit string) {
	p.mu.Lock()
	if name != p.st.phase {
		p.st.phase, p.st.phaseStart = name, p.now()
	}
	p.st.done, p.st.n, p.st.unit = done, n, unit
	p.mu.Unlock()
	p.update()
}

// timing adapts count to timeGPUChunks' reports.
func (p *progress) timing(phase string, done, total int) {
	unit := "reps"
	if phase == "warm-up" {
		unit = "runs"
	}
	p.count(phase, done, total, unit)
}

// update redraws the line (tty) or prints it if plainEvery has passed since
// the last one (plain).
func (p *progress) update() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.tty {
		p.draw(now)
		return
	}
	if now.Sub(p.lastLine) >= p.every {
		p.lastLine = now
		fmt.Fprintf(p.w, "lorabench: %s\n", p.st.line(now))
	}
}

func (p *progress) draw(now time.Time) {
	fmt.Fprintf(p.w, "\r\033[K%s %s", bar(p.st.i, p.st.total), p.st.line(now))
	p.drawn = true
}

// do runs f, which prints, with the line cleared (tty) and redraws it after.
func (p *progress) do(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	redraw := p.drawn
	p.clear()
	f()
	if redraw {
		p.draw(p.now())
	}
}

// printf prints one message line through do.
func (p *progress) printf(format string, args ...any) {
	p.do(func() { fmt.Fprintf(p.w, format, args...) })
}

func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

// finish stops the ticker and erases the line.
func (p *progress) finish() {
	if p.stop != nil {
		close(p.stop)
		<-p.stopped
		p.stop = nil
	}
	p.mu.Lock()
	p.clear()
	p.mu.Unlock()
}

const barWidth = 20

// bar is "[#####...............]" for case i of total.
func bar(i, total int) string {
	fill := barWidth * i / max(total, 1)
	return "[" + strings.Repeat("#", fill) + strings.Repeat(".", barWidth-fill) + "]"
}

// line is the progress text at now, e.g.
// "3/20 matmul f32 nt 512x512x512: timing 12/20 reps, ETA 4s (case 31s, all 2m05s)".
func (s progressState) line(now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d %s", s.i+1, s.total, s.label)
	if s.phase != "" {
		fmt.Fprintf(&b, ": %s", s.phase)
		switch {
		case s.n > 0:
			fmt.Fprintf(&b, " %d/%d %s", s.done, s.n, s.unit)
			if eta, ok := etaOf(s.done, s.n, now.Sub(s.phaseStart)); ok {
				fmt.Fprintf(&b, ", ETA %s", duration(eta))
			}
		case s.done > 0:
			fmt.Fprintf(&b, " %d %s", s.done, s.unit)
		}
	}
	fmt.Fprintf(&b, " (case %s, all %s)", duration(now.Sub(s.caseStart)), duration(now.Sub(s.start)))
	return b.String()
}

// etaOf estimates the time left for n-done more units when done took
// elapsed; false before the first unit.
func etaOf(done, n int, elapsed time.Duration) (time.Duration, bool) {
	if done <= 0 || n <= 0 || elapsed < 0 {
		return 0, false
	}
	if done >= n {
		return 0, true
	}
	return time.Duration(float64(elapsed) / float64(done) * float64(n-done)), true
}

// duration prints d rounded to the second: "4s", "2m05s", "1h02m".
func duration(d time.Duration) string {
	s := int64((d + time.Second/2) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	return fmt.Sprintf("%dh%02dm", s/3600, (s%3600)/60)
}
