package profile

import (
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/vklora/vklora/vk"
)

// Write lists one profiled step under label: every dispatch in recording
// order with its grid and GPU time, then the time per kernel, largest
// first. The dispatches are timed one after another, so their sum can
// exceed the step's time where dispatches would have overlapped. A nil w
// writes nothing.
func Write(w io.Writer, label string, prof []vk.DispatchTime) {
	if w == nil {
		return
	}
	var total time.Duration
	byKernel := map[string]time.Duration{}
	count := map[string]int{}
	for _, p := range prof {
		total += p.Time
		byKernel[p.Kernel] += p.Time
		count[p.Kernel]++
	}
	fmt.Fprintf(w, "profile %s: %d dispatches, %.3f ms in all\n", label, len(prof), millis(total))
	for i, p := range prof {
		fmt.Fprintf(w, "  %3d %-28s grid %5d×%-5d×%-3d %9.3f ms\n", i, p.Kernel, p.Groups[0], p.Groups[1], p.Groups[2], millis(p.Time))
	}
	names := make([]string, 0, len(byKernel))
	for k := range byKernel {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return byKernel[names[i]] > byKernel[names[j]] })
	for _, k := range names {
		fmt.Fprintf(w, "  %-32s ×%-3d %9.3f ms %5.1f%%\n", k, count[k], millis(byKernel[k]), 100*float64(byKernel[k])/float64(max(total, 1)))
	}
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
