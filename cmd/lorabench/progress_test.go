package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgressLine(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := progressState{i: 2, total: 20, label: "matmul f32 nt 512x512x512", phase: "timing", done: 5, n: 20, unit: "reps",
		start: t0, caseStart: t0.Add(60 * time.Second), phaseStart: t0.Add(70 * time.Second)}
	// 5 reps in 10 s: 15 more take 30 s.
	if got, want := s.line(t0.Add(80*time.Second)), "3/20 matmul f32 nt 512x512x512: timing 5/20 reps, ETA 30s (case 20s, all 1m20s)"; got != want {
		t.Errorf("line\n got %q\nwant %q", got, want)
	}
	s.done = 0 // no ETA before the first repeat
	if got := s.line(t0.Add(80 * time.Second)); strings.Contains(got, "ETA") || !strings.Contains(got, "timing 0/20 reps") {
		t.Errorf("line before the first rep: %q", got)
	}
	s.phase, s.done, s.n, s.unit = "warm-up", 7, 0, "runs" // no total: no ETA
	if got := s.line(t0.Add(80 * time.Second)); !strings.Contains(got, ": warm-up 7 runs (case") || strings.Contains(got, "ETA") {
		t.Errorf("warm-up line: %q", got)
	}
	s.phase, s.done = "setup", 0
	if got := s.line(t0.Add(80 * time.Second)); !strings.HasSuffix(got, ": setup (case 20s, all 1m20s)") {
		t.Errorf("setup line: %q", got)
	}
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{0, "0s"}, {1499 * time.Millisecond, "1s"}, {59 * time.Second, "59s"}, {125 * time.Second, "2m05s"}, {3720 * time.Second, "1h02m"}} {
		if got := duration(tc.d); got != tc.want {
			t.Errorf("duration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	if eta, ok := etaOf(3, 4, 9*time.Second); !ok || eta != 3*time.Second {
		t.Errorf("etaOf(3, 4, 9s) = %v, %v", eta, ok)
	}
	if _, ok := etaOf(0, 4, time.Second); ok {
		t.Error("etaOf with nothing done has an ETA")
	}
	if got := bar(5, 20); got != "[#####...............]" {
		t.Errorf("bar(5, 20) = %q", got)
	}
}

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time       { return c.t }
func (c *fakeClock) add(d time.Duration)  { c.t = c.t.Add(d) }
func (c *fakeClock) at() func() time.Time { return c.now }
func newFakeClock() *fakeClock            { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func lines(b *bytes.Buffer) []string      { return strings.Split(strings.TrimRight(b.String(), "\n"), "\n") }
func countLines(b *bytes.Buffer) (n int)  { return strings.Count(b.String(), "\n") }
func lastLine(b *bytes.Buffer) string     { l := lines(b); return l[len(l)-1] }
func drawnLine(b *bytes.Buffer) string {
	s := b.String()
	return s[strings.LastIndex(s, "\r\033[K")+4:]
}
func newPlain(b *bytes.Buffer, c *fakeClock) *progress {
	return newProgressClock(b, 3, false, 10*time.Second, c.at())
}

// TestProgressPlain: without a terminal, a plain line at most every 10 s,
// however often the state changes, and none in a run shorter than that.
func TestProgressPlain(t *testing.T) {
	var b bytes.Buffer
	c := newFakeClock()
	p := newPlain(&b, c)
	p.startCase(0, "mlp f32 quick fwd 64x96x160")
	for i := 0; i <= 20; i++ {
		c.add(400 * time.Millisecond) // 8 s in all
		p.timing("timing", i, 20)
	}
	if b.Len() != 0 {
		t.Fatalf("printed within the first 10 s: %q", b.String())
	}
	c.add(2 * time.Second)
	p.startCase(1, "mlp f32 quick fwdbwd 64x96x160")
	if countLines(&b) != 1 || lastLine(&b) != "lorabench: 2/3 mlp f32 quick fwdbwd 64x96x160 (case 0s, all 10s)" {
		t.Fatalf("after 10 s: %q", b.String())
	}
	p.phase("setup")
	c.add(9 * time.Second)
	p.update() // what the ticker does
	if countLines(&b) != 1 {
		t.Fatalf("a second line 9 s after the first: %q", b.String())
	}
	c.add(time.Second)
	p.update()
	if countLines(&b) != 2 || !strings.HasSuffix(lastLine(&b), ": setup (case 10s, all 20s)") {
		t.Fatalf("ticker line during a long setup: %q", b.String())
	}
	c.add(10 * time.Second)
	p.timing("timing", 4, 20) // the phase starts now: no time passed for the ETA
	c.add(10 * time.Second)
	p.timing("timing", 9, 20)
	if !strings.Contains(lastLine(&b), "timing 9/20 reps, ETA 12s") {
		t.Errorf("ETA line: %q", lastLine(&b))
	}
	p.printf("a message\n")
	p.finish()
	if lastLine(&b) != "a message" || strings.Contains(b.String(), "\r") {
		t.Errorf("plain mode wrote control characters or lost the message: %q", b.String())
	}
}

// TestProgressTTY: on a terminal the line is redrawn in place on every
// change and cleared around other output and at the end.
func TestProgressTTY(t *testing.T) {
	var b bytes.Buffer
	c := newFakeClock()
	p := newProgressClock(&b, 4, true, 10*time.Second, c.at())
	p.startCase(1, "o bf16 quick fwd 64x96x96")
	if got := drawnLine(&b); got != "[#####...............] 2/4 o bf16 quick fwd 64x96x96 (case 0s, all 0s)" {
		t.Errorf("drawn %q", got)
	}
	c.add(2 * time.Second)
	p.timing("timing", 1, 5)
	if got := drawnLine(&b); !strings.Contains(got, "timing 1/5 reps") {
		t.Errorf("drawn %q", got)
	}
	c.add(2 * time.Second)
	p.timing("timing", 2, 5)
	if got := drawnLine(&b); !strings.Contains(got, "timing 2/5 reps, ETA 3s") {
		t.Errorf("drawn %q", got)
	}
	b.Reset()
	p.printf("skip x\n")
	if got := b.String(); !strings.HasPrefix(got, "\r\033[Kskip x\n\r\033[K[") {
		t.Errorf("a message did not clear and redraw the line: %q", got)
	}
	b.Reset()
	p.finish()
	if b.String() != "\r\033[K" {
		t.Errorf("finish wrote %q, want the line cleared", b.String())
	}
}
