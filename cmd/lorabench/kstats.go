package main

import (
	"fmt"
	"io"

	"github.com/vklora/vklora/vk"
)

// printKernelStats lists, for -stats, the driver's compile statistics of
// every kernel the run built: register counts and spills show whether a
// kernel's accumulators stayed in registers.
func printKernelStats(dev *vk.Device, w io.Writer) {
	if !dev.Caps().PipelineStatistics {
		fmt.Fprintf(w, "-stats: %s has no VK_KHR_pipeline_executable_properties\n", dev.Info().Name)
		return
	}
	for _, k := range dev.Kernels() {
		s := k.Spec()
		stats, err := k.Statistics(dev)
		if err != nil {
			fmt.Fprintf(w, "kernel %s %v: %v\n", s.Name, s.Spec, err)
			continue
		}
		fmt.Fprintf(w, "kernel %s spec %v:", s.Name, s.Spec)
		for _, st := range stats {
			fmt.Fprintf(w, " %s=%g", st.Name, st.Value)
		}
		fmt.Fprintln(w)
	}
}
