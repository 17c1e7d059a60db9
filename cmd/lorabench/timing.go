package main

import (
	"fmt"
	"sort"
	"time"

	"github.com/vklora/vklora/vk"
)

// Stats summarises the GPU times of the timed repeats, in milliseconds.
type Stats struct {
	Median, Min, Max float64
	Reps             int
	Times            []float64 // every timed repeat, in order
}

// maxTimedPerSubmit bounds the repeats recorded into one submission: two
// timestamps each, so at most 400 of the recorder's 512 per submission.
const maxTimedPerSubmit = 200

// warm is how much untimed work precedes the timed repeats: at least Runs
// runs and at least GPU of GPU time. The time bound matters because GPUs
// idle at a low clock and raise it only under sustained load: on an H200
// the first ~200 ms of work ran at 345 MHz instead of 1980, 5× slower, so a
// warm-up counted in runs left a fast op's median in the slow state.
type warm struct {
	Runs int
	GPU  time.Duration
}

// defaultWarmGPU is -warmup-ms's default.
const defaultWarmGPU = 400 * time.Millisecond

// maxWarmChunks bounds the warm-up submissions.
const maxWarmChunks = 50

// maxSubmitGPU bounds the GPU time of one submission of timed or warm-up
// runs once the time of a run is known: a slow op (lavapipe, a large case)
// then reports progress at least this often. Fast ops are bounded by
// maxTimedPerSubmit first, as before.
const maxSubmitGPU = time.Second

// timeGPU records the warm-up w untimed, then reps runs of the op, each
// bracketed by GPU timestamps with a barrier between repeats so they cannot
// overlap, and returns the median, min and max of the bracketed times.
// Runs go into as few submissions as the timestamp limit allows. record
// must record exactly one run of the op; it must not submit.
func timeGPU(rec *vk.Recorder, dev *vk.Device, w warm, reps int, record func(*vk.Recorder) error) (Stats, error) {
	return timeGPUChunks(rec, dev, w, reps, maxTimedPerSubmit, record, nil)
}

// timeProgress receives the progress of timeGPUChunks: phase "warm-up"
// (done runs, total 0: bounded by GPU time too) or "timing" (done of total
// repeats). nil: not reported.
type timeProgress func(phase string, done, total int)

// timeGPUChunks is timeGPU with at most perSubmit runs (warm-up or timed)
// recorded into one submission: a step whose outputs the recorder holds
// until Submit needs its memory once per run recorded. Submissions are also
// kept to about maxSubmitGPU of GPU time each, and after each one report
// (if not nil) hears how far it got.
func timeGPUChunks(rec *vk.Recorder, dev *vk.Device, w warm, reps, perSubmit int, record func(*vk.Recorder) error, report timeProgress) (Stats, error) {
	if reps < 1 {
		return Stats{}, fmt.Errorf("timeGPU: reps %d < 1", reps)
	}
	if report == nil {
		report = func(string, int, int) {}
	}
	perSubmit = min(max(perSubmit, 1), maxTimedPerSubmit)
	if dev.Caps().TimestampValidBits == 0 {
		return Stats{}, fmt.Errorf("device %s has no timestamps on its compute queue: %w", dev.Info().Name, vk.ErrUnsupported)
	}
	per, err := warmUp(rec, w, perSubmit, record, func(runs int) { report("warm-up", runs, 0) })
	if err != nil {
		return Stats{}, fmt.Errorf("warm-up: %w", err)
	}
	times := make([]float64, 0, reps)
	report("timing", 0, reps)
	for done := 0; done < reps; {
		// Without a warm-up the first submission times one run, to learn
		// how many fit in maxSubmitGPU.
		n := min(reps-done, perSubmit)
		if per > 0 {
			n = min(n, submitRuns(per))
		} else {
			n = 1
		}
		marks := make([][2]int, n)
		for i := range marks {
			if i > 0 {
				rec.Barrier()
			}
			t0, err := rec.Timestamp()
			if err != nil {
				return Stats{}, err
			}
			if err := record(rec); err != nil {
				return Stats{}, err
			}
			t1, err := rec.Timestamp()
			if err != nil {
				return Stats{}, err
			}
			marks[i] = [2]int{t0, t1}
		}
		if err := rec.Submit(); err != nil {
			return Stats{}, err
		}
		var sum time.Duration
		for _, m := range marks {
			d, err := rec.Elapsed(m[0], m[1])
			if err != nil {
				return Stats{}, err
			}
			sum += d
			times = append(times, float64(d)/float64(time.Millisecond))
		}
		if per == 0 {
			per = max(sum/time.Duration(n), time.Microsecond)
		}
		done += n
		report("timing", done, reps)
	}
	return summarize(times), nil
}

// submitRuns is how many runs of per GPU time each fit in maxSubmitGPU (at
// least one).
func submitRuns(per time.Duration) int {
	return int(max(maxSubmitGPU/max(per, time.Nanosecond), 1))
}

// summarize returns the median (mean of the middle two for even counts),
// min and max of ms.
func summarize(ms []float64) Stats {
	s := append([]float64(nil), ms...)
	sort.Float64s(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Stats{Median: med, Min: s[0], Max: s[n-1], Reps: n, Times: ms}
}

// warmUp records untimed runs in submissions of at most perSubmit until w
// is done (or maxWarmChunks submissions). Each submission is timed as a
// whole, to size the next: the first is one run, later ones reach what is
// missing of both bounds within about maxSubmitGPU. It returns the GPU time
// of one run (0 when nothing ran), and reports the runs done after each
// submission.
func warmUp(rec *vk.Recorder, w warm, perSubmit int, record func(*vk.Recorder) error, report func(runs int)) (time.Duration, error) {
	var total, per time.Duration
	n := w.Runs
	chunk := 1
	for done, i := 0, 0; i < maxWarmChunks && (done < n || total < w.GPU); i++ {
		t0, err := rec.Timestamp()
		if err != nil {
			return 0, err
		}
		for j := 0; j < chunk; j++ {
			if j > 0 {
				rec.Barrier()
			}
			if err := record(rec); err != nil {
				return 0, err
			}
		}
		t1, err := rec.Timestamp()
		if err != nil {
			return 0, err
		}
		if err := rec.Submit(); err != nil {
			return 0, err
		}
		d, err := rec.Elapsed(t0, t1)
		if err != nil {
			return 0, err
		}
		total += d
		done += chunk
		if report != nil {
			report(done)
		}
		// Size the next submission to reach what is missing of both bounds.
		per = max(d/time.Duration(chunk), time.Microsecond)
		chunk = min(max(n-done, int((w.GPU-total)/per)+1, 1), perSubmit, submitRuns(per))
	}
	return per, nil
}
