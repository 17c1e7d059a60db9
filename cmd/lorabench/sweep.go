package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/vk"
)

// -sweep NAME=V1;V2;... times every case once per value of one engine
// switch (NAME, one of sweepVars), in one process. Each case's inputs are
// drawn and uploaded once, then every value's engine runs it, validates
// its output (matmul computes its float64 reference rows once) and times
// it; the device, the kernels and the peak measurement are shared. A tile
// sweep of 8192³ matmuls then costs GPU time, not a process, a device, an
// upload and a reference per tile. Rows carry the value in their form
// ("nt [128,256,64,256,8]") and in JSON ("sweep").
var sweepVars = []string{envCoopMatTile, envCoopMat2Tile, envCoopMat2Unroll, envCoopMatShape, envDisableCoopMat, envDisableCoopMat2, envDisableNarrow, envDisableSegments}

// sweep is a parsed -sweep: the variable, its values and the engine
// options each gives; empty for none.
type sweep struct {
	name   string
	values []string
	opts   []lora.Options
}

// parseSweep reads "NAME=V1;V2;..." and checks every value as the engine
// would read it, so that a typo is a usage error before the device opens.
func parseSweep(s string, getenv func(string) string) (sweep, error) {
	if s == "" {
		return sweep{}, nil
	}
	name, list, ok := strings.Cut(s, "=")
	if !ok || !slices.Contains(sweepVars, name) {
		return sweep{}, usagef("-sweep %q: want NAME=V1;V2;... with NAME one of %s", s, strings.Join(sweepVars, ", "))
	}
	sw := sweep{name: name}
	for _, v := range strings.Split(list, ";") {
		if v = strings.TrimSpace(v); v == "" {
			return sweep{}, usagef("-sweep %q: an empty value", s)
		}
		opt, err := engineOptions(sw.env(v, getenv))
		if err != nil {
			return sweep{}, usagef("-sweep: %v", err)
		}
		sw.values, sw.opts = append(sw.values, v), append(sw.opts, opt)
	}
	return sw, nil
}

// env is getenv with the swept variable set to v.
func (sw sweep) env(v string, getenv func(string) string) func(string) string {
	return func(k string) string {
		if k == sw.name {
			return v
		}
		return getenv(k)
	}
}

// variant is one engine of a run: the swept value ("" without -sweep).
type variant struct {
	value string
	eng   *lora.Engine
}

// variants makes the run's engines: one per swept value, else the one the
// environment describes.
func (sw sweep) variants(dev *vk.Device) ([]variant, error) {
	if len(sw.values) == 0 {
		eng, err := newEngine(dev)
		return []variant{{eng: eng}}, err
	}
	var vs []variant
	for i, v := range sw.values {
		eng, err := lora.NewEngine(dev, sw.opts[i])
		if err != nil {
			return nil, fmt.Errorf("-sweep %s=%s: %w", sw.name, v, err)
		}
		vs = append(vs, variant{value: v, eng: eng})
	}
	return vs, nil
}

// sweepLabel is a row's JSON sweep field: "NAME=VALUE", or "" without one.
func sweepLabel(name, value string) string {
	if value == "" {
		return ""
	}
	return name + "=" + value
}

// sweepForm is a case's form as its rows under value show it.
func sweepForm(form, value string) string {
	if value == "" {
		return form
	}
	return form + " [" + value + "]"
}

// widen widens the cases' forms by the longest value, for the table's
// column widths.
func (sw sweep) widen(cases []benchCase) []benchCase {
	longest := ""
	for _, v := range sw.values {
		if len(v) > len(longest) {
			longest = v
		}
	}
	out := slices.Clone(cases)
	for i := range out {
		out[i].Form = sweepForm(out[i].Form, longest)
	}
	return out
}
