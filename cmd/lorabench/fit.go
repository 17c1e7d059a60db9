package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
)

// Before a case allocates anything, runCases compares what it will need
// (needs, computed from the shape alone) with what the device and the host
// allow (limits). A case that cannot fit is skipped with the reason and, where
// one exists, a smaller command line that fits (hint); the sweep goes on.

// maxDim bounds every dimension flag: the kernels take M, N and K as 32-bit
// push constants and index with 32-bit integers. Within it, the products of
// two dimensions cannot overflow an int, and the byte counts below are
// float64, so no size computed before the fit check can wrap around.
const maxDim = math.MaxInt32

// hostFraction is the share of the host's available memory (MemAvailable) a
// case may allocate: the count below adds every allocation without the
// frees, and Go's heap grows to twice what is live between collections.
const hostFraction = 0.5

// needs is what one case will allocate and dispatch, from its shape.
type needs struct {
	bufs []bufNeed // device buffers known from the shape (inputs, weights, outputs, layer intermediates)
	// device is the device memory at the case's peak: what it holds plus
	// one step's outputs and intermediates (a lower bound: split-K scratch
	// and small temporaries are not counted).
	device float64
	// host is the host memory the case allocates: the random float64 inputs,
	// their rounded, float32 and dtype copies, NF4 readbacks, the outputs
	// read back and the float64 reference; summed without the frees.
	host float64
	// products are the [rows, cols] outputs of the matmuls it dispatches:
	// their workgroup counts must fit the device's limits.
	products [][2]float64
	// peakTransient is the largest transient buffer not yet in device.
	peakTransient float64
}

// bufNeed is one device buffer.
type bufNeed struct {
	what  string
	bytes float64
}

// buf adds a device buffer of rows×cols elements of size bytes each and
// counts it in the device total.
func (n *needs) buf(what string, size, rows, cols float64) {
	b := size * rows * cols
	n.bufs = append(n.bufs, bufNeed{what, b})
	n.device += b
}

// transient adds a buffer that lives only while the case is set up, one at
// a time (a dense weight before it is quantized to NF4): it must fit a
// binding, and the largest counts once in the device total (finish).
func (n *needs) transient(what string, size, rows, cols float64) {
	b := size * rows * cols
	n.bufs = append(n.bufs, bufNeed{what, b})
	n.peakTransient = max(n.peakTransient, b)
}

// finish adds the largest transient buffer to the device total.
func (n *needs) finish() needs {
	n.device += n.peakTransient
	n.peakTransient = 0
	return *n
}

// hostInput counts the host memory of a random input of elems values stored
// as d: ref.Random and ref.RoundTo (float64 each), ref.ToFloat32 and the
// dtype encoding uploaded.
func hostInput(elems float64, d dtype.DType) float64 {
	return elems * (8 + 8 + 4 + float64(d.Size()))
}

// hostReadback counts reading elems values of d back: the raw bytes, their
// float32 decoding and the float64 widening compared with the reference.
func hostReadback(elems float64, d dtype.DType) float64 {
	return elems * (float64(d.Size()) + 4 + 8)
}

// hostNF4 is the extra host memory of quantizing an elems-value weight to
// NF4: the codes and scales read back, the dequantized float32 and float64
// copies handed to the reference.
const hostNF4 = 0.5 + 4 + 8 + 1

// largest returns the largest buffer.
func (n needs) largest() bufNeed {
	var b bufNeed
	for _, x := range n.bufs {
		if x.bytes > b.bytes {
			b = x
		}
	}
	return b
}

// limits is what the device and the host allow one case.
type limits struct {
	binding     float64 // largest buffer: min(maxStorageBufferRange, maxMemoryAllocationSize)
	bindingName string  // which limit binding is
	heap        float64 // device-local memory (0: unknown)
	groups      [3]float64
	host        float64 // host bytes a case may allocate (0: unknown)
	// unified: the device's memory is the host's (a CPU device such as
	// lavapipe, or an integrated GPU), so device bytes count against host.
	unified bool
	// strict checks the workgroup counts against the smallest tiles of
	// every kernel instead of the largest of any: a case that fits strict
	// limits fits whichever kernel the engine picks. Hints use it, so that
	// what they suggest runs; skips do not, so that they skip only what
	// cannot run.
	strict bool
}

func deviceLimits(info vk.DeviceInfo, hostAvail float64) limits {
	c := info.Caps
	l := limits{binding: float64(c.MaxStorageBufferRange), bindingName: "maxStorageBufferRange",
		heap: float64(c.DeviceLocalBytes), host: hostFraction * hostAvail,
		unified: info.Type == vk.DeviceCPU || info.Type == vk.DeviceIntegrated}
	if c.MaxAllocationSize > 0 && c.MaxAllocationSize < c.MaxStorageBufferRange {
		l.binding, l.bindingName = float64(c.MaxAllocationSize), "maxMemoryAllocationSize"
	}
	for i, g := range c.MaxWorkgroupCount {
		l.groups[i] = float64(g)
	}
	return l
}

// Tile extents that bound the workgroup counts: the matmul kernels cover
// minTile to maxTile rows or columns of C per workgroup, and the narrow
// kernel (an output side of at most narrowMaxSide) minNarrowWide to
// maxNarrowWide indices of its wide side, which it puts along x
// (lora/tiles.go, cm2.go, coopmat.go, narrow.go).
const (
	minTile       = 32
	maxTile       = 128
	narrowMaxSide = 32
	minNarrowWide = 16
	maxNarrowWide = 1024
)

// fit returns why n cannot run within l, or "" when it can.
func (n needs) fit(l limits) string {
	if b := n.largest(); l.binding > 0 && b.bytes > l.binding {
		return fmt.Sprintf("needs %s in one buffer (%s), device allows %s per binding (%s)",
			human(b.bytes), b.what, human(l.binding), l.bindingName)
	}
	for _, p := range n.products {
		if why := groupsFit(p[0], p[1], l.groups, l.strict); why != "" {
			return why
		}
	}
	if l.heap > 0 && n.device > l.heap {
		return fmt.Sprintf("needs ~%s of device memory, device-local memory is %s", human(n.device), human(l.heap))
	}
	host, what := n.host, "random inputs, float64 reference"
	if l.unified {
		host, what = host+n.device, what+", and the device's memory, which is host memory here"
	}
	if l.host > 0 && host > l.host {
		return fmt.Sprintf("needs ~%s of host memory (%s), %s allowed (half of MemAvailable)", human(host), what, human(l.host))
	}
	return ""
}

// groupsFit checks an output of rows×cols against the workgroup-count
// limits. The tiled kernels put columns along x and rows along y, the
// narrow kernel its wide side along x. Not strict: some kernel's largest
// tiles must fit. Strict: every kernel's smallest tiles must.
func groupsFit(rows, cols float64, g [3]float64, strict bool) string {
	if g[0] == 0 || g[1] == 0 {
		return "" // unknown
	}
	narrow := math.Min(rows, cols) <= narrowMaxSide
	tile, wide := float64(maxTile), float64(maxNarrowWide)
	if strict {
		tile, wide = minTile, minNarrowWide
	}
	tx, ty := math.Ceil(cols/tile), math.Ceil(rows/tile)
	tiled := tx <= g[0] && ty <= g[1]
	narrowOK := narrow && math.Ceil(math.Max(rows, cols)/wide) <= g[0]
	if strict && tiled && (!narrow || narrowOK) || !strict && (tiled || narrowOK) {
		return ""
	}
	return fmt.Sprintf("output [%.0f, %.0f] needs at least %.0f×%.0f workgroups, device allows %.0f×%.0f (maxComputeWorkGroupCount)",
		rows, cols, tx, ty, g[0], g[1])
}

// resize is a smaller variant of a case for a hint: the same case with
// flag set to v (v = 0: the flag alone, e.g. "-weight nf4").
type resize struct {
	flag string
	v    int // the current value; 0 for a flag without a value
	with func(v int) benchCase
	// show, if set, writes the command-line change for v (several flags
	// at once); else it is "flag v".
	show func(v int) string
}

// hint returns a command-line change under which c fits l ("try -m 1024"),
// or "" when none of c's resizes does: halving each resizable value from
// the largest power of two below it. What it suggests fits l strictly.
func hint(c benchCase, l limits) string {
	l.strict = true
	for _, r := range c.Smaller {
		if r.v == 0 {
			if r.with(0).Need.fit(l) == "" {
				return "try " + r.flag
			}
			continue
		}
		for v := prevPow2(r.v); v >= 1; v /= 2 {
			if r.with(v).Need.fit(l) == "" {
				if r.show != nil {
					return "try " + r.show(v)
				}
				return fmt.Sprintf("try %s %d", r.flag, v)
			}
		}
	}
	return ""
}

// prevPow2 is the largest power of two below v (v ≥ 2), else 0.
func prevPow2(v int) int {
	p := 1
	for p*2 < v {
		p *= 2
	}
	if p >= v {
		return 0
	}
	return p
}

// skipLine is the one line a skipped case prints.
func skipLine(c benchCase, why, hint string) string {
	s := "skip " + c.String() + ": " + why
	if hint != "" {
		s += "; " + hint
	}
	return s
}

// human prints a byte count in binary units with two or three significant
// digits.
func human(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	switch {
	case i == 0:
		return fmt.Sprintf("%.0f B", b)
	case b >= 100 || b == math.Trunc(b):
		return fmt.Sprintf("%.0f %s", b, units[i])
	}
	return fmt.Sprintf("%.2g %s", b, units[i])
}

// memAvailable returns the host's available memory in bytes (Linux
// /proc/meminfo MemAvailable), or 0 when unknown. A variable for tests.
var memAvailable = func() float64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	return parseMemAvailable(bufio.NewScanner(f))
}

// parseMemAvailable reads the MemAvailable line ("MemAvailable: 123 kB").
func parseMemAvailable(sc *bufio.Scanner) float64 {
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == "MemAvailable:" {
			v, err := strconv.ParseFloat(fs[1], 64)
			if err != nil || v < 0 {
				return 0
			}
			if len(fs) >= 3 && strings.EqualFold(fs[2], "kB") {
				v *= 1024
			}
			return v
		}
	}
	return 0
}

// dimFlag is a dimension flag's name and value.
type dimFlag struct {
	name string
	v    int
}

// checkDims refuses dimensions below 1 or above maxDim: usage errors, as no
// device runs them. What fits a particular device is decided per case.
func checkDims(dims ...dimFlag) error {
	for _, d := range dims {
		if d.v < 1 {
			return usagef("-%s must be ≥ 1 (got %d)", d.name, d.v)
		}
		if d.v > maxDim {
			return usagef("-%s %d: dimensions are at most %d (the kernels index with 32-bit integers)", d.name, d.v, maxDim)
		}
	}
	return nil
}
