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

// timeGPU records the warm-up w untimed, then reps runs of the op, each
// bracketed by GPU timestamps with a barrier between repeats so they cannot
// overlap, and returns the median, min and max of the bracketed times.
// Runs go into as few submissions as the timestamp limit allows. record
// must record exactly one run of the op; it must not submit.
func timeGPU(rec *vk.Recorder, dev *vk.Device, w warm, reps int, record func(*vk.Recorder) error) (Stats, error) {
	return timeGPUChunks(rec, dev, w, reps, maxTimedPerSubmit, record)
}

// timeGPUChunks is timeGPU with at most perSubmit runs (warm-up or timed)
// recorded into one submission: a step whose outputs the recorder holds
// until Submit needs its memory once per run recorded.
func timeGPUChunks(rec *vk.Recorder, dev *vk.Device, w warm, reps, perSubmit int, record func(*vk.Recorder) error) (Stats, error) {
	if reps < 1 {
		return Stats{}, fmt.Errorf("timeGPU: reps %d < 1", reps)
	}
	perSubmit = min(max(perSubmit, 1), maxTimedPerSubmit)
	if dev.Caps().TimestampValidBits == 0 {
		return Stats{}, fmt.Errorf("device %s has no timestamps on its compute queue: %w", dev.Info().Name, vk.ErrUnsupported)
	}
	if err := warmUp(rec, w, perSubmit, record); err != nil {
		return Stats{}, fmt.Errorf("warm-up: %w", err)
	}
	pending := 0 // runs recorded since the last Submit
	times := make([]float64, 0, reps)
	for done := 0; done < reps; {
		if pending == perSubmit {
			if err := rec.Submit(); err != nil {
				return Stats{}, err
			}
			pending = 0
		}
		n := min(reps-done, perSubmit-pending)
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
		pending = 0
		for _, m := range marks {
			d, err := rec.Elapsed(m[0], m[1])
			if err != nil {
				return Stats{}, err
			}
			times = append(times, float64(d)/float64(time.Millisecond))
		}
		done += n
	}
	return summarize(times), nil
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
// whole, to size the next.
func warmUp(rec *vk.Recorder, w warm, perSubmit int, record func(*vk.Recorder) error) error {
	var total time.Duration
	n := w.Runs
	chunk := min(max(n, 1), perSubmit)
	for done, i := 0, 0; i < maxWarmChunks && (done < n || total < w.GPU); i++ {
		t0, err := rec.Timestamp()
		if err != nil {
			return err
		}
		for j := 0; j < chunk; j++ {
			if j > 0 {
				rec.Barrier()
			}
			if err := record(rec); err != nil {
				return err
			}
		}
		t1, err := rec.Timestamp()
		if err != nil {
			return err
		}
		if err := rec.Submit(); err != nil {
			return err
		}
		d, err := rec.Elapsed(t0, t1)
		if err != nil {
			return err
		}
		total += d
		done += chunk
		// Size the next submission to reach what is missing of both bounds.
		per := max(d/time.Duration(chunk), time.Microsecond)
		chunk = min(max(n-done, int((w.GPU-total)/per)+1, 1), perSubmit)
	}
	return nil
}
