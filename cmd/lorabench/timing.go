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
}

// maxTimedPerSubmit bounds the repeats recorded into one submission: two
// timestamps each, so at most 400 of the recorder's 512 per submission.
const maxTimedPerSubmit = 200

// timeGPU records warmup runs of the op, then reps runs, each bracketed by
// GPU timestamps with a barrier between repeats so they cannot overlap, and
// returns the median, min and max of the bracketed times. Everything goes
// into as few submissions as the timestamp limit allows: the warm-up shares
// the first submission with up to maxTimedPerSubmit repeats. record must
// record exactly one run of the op; it must not submit.
func timeGPU(rec *vk.Recorder, dev *vk.Device, warmup, reps int, record func(*vk.Recorder) error) (Stats, error) {
	return timeGPUChunks(rec, dev, warmup, reps, maxTimedPerSubmit, record)
}

// timeGPUChunks is timeGPU with at most perSubmit runs (warm-up or timed)
// recorded into one submission: a step whose outputs the recorder holds
// until Submit needs its memory once per run recorded.
func timeGPUChunks(rec *vk.Recorder, dev *vk.Device, warmup, reps, perSubmit int, record func(*vk.Recorder) error) (Stats, error) {
	if reps < 1 {
		return Stats{}, fmt.Errorf("timeGPU: reps %d < 1", reps)
	}
	perSubmit = min(max(perSubmit, 1), maxTimedPerSubmit)
	if dev.Caps().TimestampValidBits == 0 {
		return Stats{}, fmt.Errorf("device %s has no timestamps on its compute queue: %w", dev.Info().Name, vk.ErrUnsupported)
	}
	pending := 0 // runs recorded since the last Submit
	for i := 0; i < warmup; i++ {
		if pending == perSubmit {
			if err := rec.Submit(); err != nil {
				return Stats{}, fmt.Errorf("warm-up: %w", err)
			}
			pending = 0
		}
		if err := record(rec); err != nil {
			return Stats{}, fmt.Errorf("warm-up: %w", err)
		}
		rec.Barrier()
		pending++
	}
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
	return Stats{Median: med, Min: s[0], Max: s[n-1], Reps: n}
}
