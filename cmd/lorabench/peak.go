package main

// peak.go: `lorabench peak`, the device's own ceilings: register-resident
// cooperative-matrix throughput for every shape the device reports and a
// kernel can express (subgroup scope, VK_KHR_cooperative_matrix; workgroup
// scope, VK_NV_cooperative_matrix2), scalar fp32 FMA throughput and
// device-memory copy bandwidth. The result is cached per device and driver
// (peak_cache.go); matmul and bench rows divide their rates by it
// (frac_peak, see peakDoc.annotate).

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/internal/term"
	"github.com/vklora/vklora/kernels"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
)

// peakSchema versions the cached document and the way it is measured:
// bump it when a measurement changes so that old caches are re-measured.
const peakSchema = 1

// peakRow is one measured ceiling.
type peakRow struct {
	Kind  string `json:"kind"`  // "coopmat", "fma" or "copy"; with -tiles "tile" or "read"
	Scope string `json:"scope"` // "subgroup" or "workgroup" (coopmat, tile), "invocation" (fma), "device" (copy, read)
	Shape string `json:"shape"` // "16x16x16" (M×N×K), "8 vec4 chains", "1 GiB"
	// Cooperative matrices: the shape and component types as the device
	// reports them (A·B+C→Result).
	M      int    `json:"M,omitempty"`
	N      int    `json:"N,omitempty"`
	K      int    `json:"K,omitempty"`
	A      string `json:"a,omitempty"`
	B      string `json:"b,omitempty"`
	C      string `json:"c,omitempty"`
	Result string `json:"result,omitempty"`
	Types  string `json:"types"`            // "f16·f16+f32→f32", "f32", or the copy method
	Kernel string `json:"kernel,omitempty"` // shader variant, or "vkCmdCopyBuffer"
	// The launch: workgroup size, the subgroup size the kernel reported,
	// workgroups, loop iterations of one invocation.
	Invocations int `json:"invocations,omitempty"`
	Subgroup    int `json:"subgroup,omitempty"`
	Groups      int `json:"groups,omitempty"`
	Iters       int `json:"iters,omitempty"`
	// Work of one run: FLOP (2·M·N·K per MulAdd, 2 per FMA) or bytes
	// (read + written), and the rate at the median time.
	FLOPs     float64   `json:"flop,omitempty"`
	Bytes     float64   `json:"bytes,omitempty"`
	TFLOPs    float64   `json:"tflops,omitempty"`
	GBs       float64   `json:"gbs,omitempty"`
	MsMedian  float64   `json:"ms_median"`
	MsMin     float64   `json:"ms_min"`
	MsMax     float64   `json:"ms_max"`
	MsTimes   []float64 `json:"ms_times,omitempty"`
	Reps      int       `json:"reps"`
	Validated bool      `json:"validated"`       // the outputs matched the closed form
	Error     string    `json:"error,omitempty"` // why it was not measured or not validated
}

// peakDoc is the result of `lorabench peak` and the cache file's content.
type peakDoc struct {
	Schema   int       `json:"schema"`
	Key      peakKey   `json:"key"`
	Device   string    `json:"device"`
	Measured time.Time `json:"measured"`
	Seconds  float64   `json:"seconds"` // wall time of the measurement
	Rows     []peakRow `json:"rows"`
	// Skipped lists reported cooperative-matrix configurations that no
	// peak kernel expresses, and why workgroup scope was not measured.
	Skipped []string `json:"skipped,omitempty"`
	// Set when the document is printed, not stored: read from the cache,
	// and which file.
	Cached bool   `json:"cached"`
	File   string `json:"file,omitempty"`
}

// peakSizes are the launch sizes of one device class.
type peakSizes struct {
	target     time.Duration // calibrate each kernel's grid to about this much GPU time per run
	fmaIters   int
	fmaGroups  uint32 // before calibration
	cmIters    int    // subgroup scope; ≤ 2048 keeps f16 accumulation exact
	cmGroups   uint32
	cm2Iters   int
	cm2Groups  uint32
	maxGroups  uint32
	copyGroups uint32 // most workgroups of the copy shader (each then copies several 16-byte elements)
	copyBytes  uint64 // of each of the two buffers
	readBytes  uint64 // the cache-resident buffer of peak_read (-tiles)
	warmFirst  warm   // before the first measurement (clocks ramp up)
	warmEach   warm   // before every other
	defaultRep int
}

// sizesFor picks the launch sizes from the device type: a CPU device
// (lavapipe) gets tiny ones so that the whole measurement takes seconds;
// a GPU gets thousands of workgroups (several per multiprocessor on the
// largest GPUs) and a copy of 1 GiB, several times a large L2.
func sizesFor(info vk.DeviceInfo) peakSizes {
	c := info.Caps
	s := peakSizes{
		target: 5 * time.Millisecond, fmaIters: 1024, fmaGroups: 4096,
		cmIters: 1024, cmGroups: 4096, cm2Iters: 512, cm2Groups: 1024, maxGroups: 1 << 20,
		copyGroups: 65535, copyBytes: 1 << 30, readBytes: 4 << 20, warmFirst: warm{Runs: 2, GPU: defaultWarmGPU}, warmEach: warm{Runs: 2, GPU: 100 * time.Millisecond},
		defaultRep: 10,
	}
	if info.Type == vk.DeviceCPU {
		s = peakSizes{
			target: 8 * time.Millisecond, fmaIters: 64, fmaGroups: 2, cmIters: 16, cmGroups: 2,
			cm2Iters: 16, cm2Groups: 2, maxGroups: 4096, copyGroups: 65535, copyBytes: 16 << 20, readBytes: 256 << 10,
			warmFirst: warm{Runs: 1}, warmEach: warm{Runs: 1}, defaultRep: 5,
		}
	}
	s.maxGroups = min(s.maxGroups, c.MaxWorkgroupCount[0])
	s.copyGroups = min(s.copyGroups, s.maxGroups)
	// Both copy buffers must fit the binding and allocation limits and,
	// with room to spare, the device's memory.
	lim := min(c.MaxStorageBufferRange, c.MaxAllocationSize)
	if c.DeviceLocalBytes > 0 {
		lim = min(lim, c.DeviceLocalBytes/4)
	}
	for s.copyBytes > lim && s.copyBytes > 1<<20 {
		s.copyBytes /= 2
	}
	return s
}

// Fill words of the cooperative-matrix inputs: every element 2^-4 (f16,
// bf16) or 1 (int8), so each MulAdd adds K·2^-8 (or K) to every element of
// every accumulator, exactly.
const (
	fillF16  = 0x2C002C00
	fillBF16 = 0x3D803D80
	fillI8   = 0x01010101
)

// coopVariant is a peak_coopmat variant: its input and accumulator types.
type coopVariant struct {
	key     shaders.PeakKey
	in, acc vk.ComponentType
	fill    uint32
}

var coopVariants = []coopVariant{
	{shaders.PeakKey{Kind: shaders.PeakCoopMat, In: shaders.PeakF16}, vk.ComponentF16, vk.ComponentF32, fillF16},
	{shaders.PeakKey{Kind: shaders.PeakCoopMat, In: shaders.PeakF16, C16: true}, vk.ComponentF16, vk.ComponentF16, fillF16},
	{shaders.PeakKey{Kind: shaders.PeakCoopMat, In: shaders.PeakBF16}, vk.ComponentBF16, vk.ComponentF32, fillBF16},
	{shaders.PeakKey{Kind: shaders.PeakCoopMat, In: shaders.PeakI8}, vk.ComponentS8, vk.ComponentS32, fillI8},
	{shaders.PeakKey{Kind: shaders.PeakCoopMat, In: shaders.PeakU8}, vk.ComponentU8, vk.ComponentU32, fillI8},
}

var cm2Variants = []coopVariant{
	{shaders.PeakKey{Kind: shaders.PeakCM2, In: shaders.PeakF16}, vk.ComponentF16, vk.ComponentF32, fillF16},
	{shaders.PeakKey{Kind: shaders.PeakCM2, In: shaders.PeakBF16}, vk.ComponentBF16, vk.ComponentF32, fillBF16},
}

// cm2Tiles are the workgroup-scope tiles measured per configuration.
var peakCM2Tiles = [][3]int{{128, 128, 32}, {64, 64, 32}}

// componentBytes is the size of one element of a component type.
func componentBytes(c vk.ComponentType) int {
	switch c {
	case vk.ComponentS8, vk.ComponentU8:
		return 1
	case vk.ComponentF16, vk.ComponentBF16:
		return 2
	case vk.ComponentF64:
		return 8
	}
	return 4
}

// typeUsable reports whether the device can run shaders on component type c.
func typeUsable(caps *vk.Caps, c vk.ComponentType) bool {
	switch c {
	case vk.ComponentF16:
		return caps.Float16
	case vk.ComponentBF16:
		return caps.BFloat16CoopMat
	case vk.ComponentS8, vk.ComponentU8:
		return caps.Int8
	}
	return true
}

// coopCase is one subgroup-scope shape to measure with its variant.
type coopCase struct {
	shape vk.CoopMatShape
	v     coopVariant
}

// coopMatCases lists the subgroup-scope shapes the device reports that a
// peak_coopmat variant expresses, in the device's order without duplicates,
// and one line for each other reported configuration.
func coopMatCases(caps *vk.Caps) (cases []coopCase, skipped []string) {
	if !caps.CoopMat {
		return nil, nil
	}
	seen := map[vk.CoopMatShape]bool{}
	for _, s := range caps.CoopMatShapes {
		if seen[s] {
			continue
		}
		seen[s] = true
		switch {
		case !s.SubgroupScope:
			skipped = append(skipped, fmt.Sprintf("coopmat %s: not subgroup scope", s))
			continue
		case s.Saturating:
			skipped = append(skipped, fmt.Sprintf("coopmat %s: saturating accumulation has no peak kernel", s))
			continue
		}
		found := false
		for _, v := range coopVariants {
			if s.Multiplies(v.in, v.acc) {
				found = true
				if !typeUsable(caps, v.in) {
					skipped = append(skipped, fmt.Sprintf("coopmat %s: the device lacks the %s shader type", s, v.in))
					break
				}
				cases = append(cases, coopCase{s, v})
				break
			}
		}
		if !found {
			skipped = append(skipped, fmt.Sprintf("coopmat %s: no peak kernel for these types", s))
		}
	}
	return cases, skipped
}

// cm2Case is one workgroup-scope tile to measure.
type cm2Case struct {
	BM, BN, BK, WG int
	v              coopVariant
}

// cm2Cases lists the workgroup-scope tiles to measure: for every
// flexible-dimension configuration with f16 or bf16 inputs and fp32
// accumulation, the peakCM2Tiles that are multiples of its granularities
// and within the device's limits, at its invocation count.
func cm2Cases(caps *vk.Caps) (cases []cm2Case, skipped []string) {
	switch {
	case !caps.CoopMat2:
		return nil, []string{"workgroup scope: the device has no VK_NV_cooperative_matrix2"}
	case !caps.CoopMat2Flexible:
		return nil, []string{"workgroup scope: VK_NV_cooperative_matrix2 without flexible dimensions"}
	}
	seen := map[cm2Case]bool{}
	for _, s := range caps.CoopMat2Shapes {
		var v *coopVariant
		for i := range cm2Variants {
			if s.Multiplies(cm2Variants[i].in, cm2Variants[i].acc) {
				v = &cm2Variants[i]
			}
		}
		if v == nil {
			skipped = append(skipped, fmt.Sprintf("coopmat2 %s: no peak kernel for these types", s))
			continue
		}
		if !typeUsable(caps, v.in) {
			skipped = append(skipped, fmt.Sprintf("coopmat2 %s: the device lacks the %s shader type", s, v.in))
			continue
		}
		if caps.CoopMat2MaxWorkgroupSize > 0 && s.Invocations > caps.CoopMat2MaxWorkgroupSize {
			continue
		}
		for _, t := range peakCM2Tiles {
			if s.MGranularity == 0 || s.NGranularity == 0 || s.KGranularity == 0 ||
				t[0]%int(s.MGranularity) != 0 || t[1]%int(s.NGranularity) != 0 || t[2]%int(s.KGranularity) != 0 {
				continue
			}
			if caps.CoopMat2MaxDimension > 0 && max(t[0], t[1], t[2]) > int(caps.CoopMat2MaxDimension) {
				continue
			}
			c := cm2Case{BM: t[0], BN: t[1], BK: t[2], WG: int(s.Invocations), v: *v}
			if !seen[c] {
				seen[c] = true
				cases = append(cases, c)
			}
		}
	}
	return cases, skipped
}

// coopFLOPs is the work of one run of peak_coopmat: every subgroup runs
// iters iterations of 8 MulAdds of 2·M·N·K each.
func coopFLOPs(groups, subgroupsPerGroup, iters int, s vk.CoopMatShape) float64 {
	return float64(groups) * float64(subgroupsPerGroup) * float64(iters) * 8 * 2 * float64(s.M) * float64(s.N) * float64(s.K)
}

// cm2FLOPs: every workgroup runs iters MulAdds of 2·BM·BN·BK.
func cm2FLOPs(groups, iters int, c cm2Case) float64 {
	return float64(groups) * float64(iters) * 2 * float64(c.BM) * float64(c.BN) * float64(c.BK)
}

// fmaPerIter is the FMAs of one invocation per loop iteration of
// peak_fma: 4 repeats of 8 vec4 chains.
const fmaPerIter = 4 * 8 * 4

// fmaFLOPs: 2 FLOP per FMA.
func fmaFLOPs(groups, wg, iters int) float64 {
	return float64(groups) * float64(wg) * float64(iters) * fmaPerIter * 2
}

// copyBytes is the traffic of one copy of n bytes: read once, written once.
func copyTraffic(n uint64) float64 { return 2 * float64(n) }

// coopExpected is every stored element of peak_coopmat: the sum of 8
// accumulators that each gained iters·K·a·b, with a = b = 2^-4 for float
// inputs and 1 for int8.
func coopExpected(v coopVariant, iters, k int) float64 {
	e := 8 * float64(iters) * float64(k)
	if v.in == vk.ComponentF16 || v.in == vk.ComponentBF16 {
		e /= 256
	}
	return e
}

// cm2Expected is every stored element of peak_cm2: iters MulAdds of
// BK products 2^-4·2^-4.
func cm2Expected(iters, bk int) float64 { return float64(iters) * float64(bk) / 256 }

// fmaExpected is component l of slot s of peak_fma after iters
// iterations with m = 1 and add c.
func fmaExpected(s, l, iters int, c float64) float64 {
	return float64(112+8*l+8*(s&7)) + 32*float64(iters)*c
}

// fmaAdd is peak_fma's c: exact steps in fp32.
const fmaAdd = 1.0 / 4096

// The scalar kernels' keys.
var (
	peakFMAKey  = shaders.PeakKey{Kind: shaders.PeakFMA, In: shaders.PeakF32}
	peakCopyKey = shaders.PeakKey{Kind: shaders.PeakCopy, In: shaders.PeakU32}
	peakReadKey = shaders.PeakKey{Kind: shaders.PeakRead, In: shaders.PeakU32}
)

// peakKernel builds a peak kernel from its key (the registry knows its
// bindings and push size) and specialization constants.
func peakKernel(dev *vk.Device, key shaders.PeakKey, spec ...uint32) (*vk.Kernel, error) {
	return dev.ShaderKernel(key, spec...)
}

// peakMeter measures one device.
type peakMeter struct {
	dev    *vk.Device
	rec    *vk.Recorder
	sizes  peakSizes
	reps   int
	first  bool      // the next measurement is the first (warm up longer)
	status io.Writer // progress lines, or nil
}

// measurePeak measures every ceiling of dev. Kernels that fail to build or
// to validate give rows with Error set; a lost device aborts.
func measurePeak(dev *vk.Device, reps int, status io.Writer) (*peakDoc, error) {
	start := time.Now()
	info := dev.Info()
	rec, err := dev.NewRecorder()
	if err != nil {
		return nil, err
	}
	defer rec.Release()
	m := &peakMeter{dev: dev, rec: rec, sizes: sizesFor(info), reps: reps, first: true, status: status}
	if m.reps <= 0 {
		m.reps = m.sizes.defaultRep
	}
	doc := &peakDoc{Schema: peakSchema, Key: peakKeyOf(info), Device: info.String(), Measured: start.UTC()}
	add := func(r peakRow, err error) error {
		r, err = m.settle(r, err)
		if err != nil {
			return err
		}
		doc.Rows = append(doc.Rows, r)
		return nil
	}
	if err := add(m.fma()); err != nil {
		return nil, err
	}
	cases, skipped := coopMatCases(dev.Caps())
	doc.Skipped = append(doc.Skipped, skipped...)
	for _, c := range cases {
		if err := add(m.coopmat(c)); err != nil {
			return nil, err
		}
	}
	cm2s, skipped := cm2Cases(dev.Caps())
	doc.Skipped = append(doc.Skipped, skipped...)
	for _, c := range cm2s {
		if err := add(m.cm2(c)); err != nil {
			return nil, err
		}
	}
	for _, method := range []string{"shader", "vkCmdCopyBuffer"} {
		if err := add(m.copy(method)); err != nil {
			return nil, err
		}
	}
	doc.Seconds = time.Since(start).Seconds()
	return doc, nil
}

// settle finishes a measurement's row: a failure other than a lost
// device becomes the row's Error (the row is kept, not validated) and
// whatever the measurement left recorded is dropped, since a recording
// error is sticky until Submit and would fail every later measurement.
func (m *peakMeter) settle(r peakRow, err error) (peakRow, error) {
	if errors.Is(err, vk.ErrDeviceLost) {
		return r, err
	}
	if err != nil {
		m.rec.Submit() //nolint:errcheck // it returns that error again
		r.Validated = false
		if r.Error == "" {
			r.Error = err.Error()
		}
	}
	return r, nil
}

func (m *peakMeter) note(format string, args ...any) {
	if m.status != nil {
		fmt.Fprintf(m.status, format+"\n", args...)
	}
}

// kernelRun is one kernel measurement: dispatch records one run over
// groups workgroups; check validates the outputs of the run last
// submitted and returns the work of one workgroup (FLOP), which some
// kernels learn only from their outputs (the subgroup count).
type kernelRun struct {
	dispatch func(rec *vk.Recorder, groups uint32) error
	check    func(groups uint32) (workPerGroup float64, err error)
	base     uint32 // workgroups of the validation run
	fixed    bool   // the work does not scale with groups (copies): no calibration
	bytes    bool   // check returns bytes moved, not FLOPs (copies and reads)
}

// time validates one run at the base grid, warms up, scales the grid so
// that a run takes about the target time, and times the repeats. It fills
// the row's launch, work and time fields.
func (m *peakMeter) time(row *peakRow, kr kernelRun) error {
	rec := m.rec
	groups := kr.base
	if err := kr.dispatch(rec, groups); err != nil {
		return err
	}
	if err := rec.Submit(); err != nil {
		return err
	}
	if _, err := kr.check(groups); err != nil {
		return err
	}
	w := m.sizes.warmEach
	if m.first {
		w, m.first = m.sizes.warmFirst, false
	}
	record := func(r *vk.Recorder) error { return kr.dispatch(r, groups) }
	if _, err := warmUp(rec, w, 8, record, nil); err != nil {
		return err
	}
	// Calibrate: scale the grid by target / (median of three timed runs),
	// up to three rounds while a run takes under half the target (a small
	// grid's time is mostly overhead, so one round undershoots).
	for round := 0; round < 3 && !kr.fixed; round++ {
		st, err := timeGPU(rec, m.dev, warm{}, 3, record)
		if err != nil {
			return err
		}
		t := st.Median * 1e-3
		if t <= 0 || t >= m.sizes.target.Seconds()/2 || groups >= m.sizes.maxGroups {
			break
		}
		scale := m.sizes.target.Seconds() / t
		groups = uint32(min(float64(groups)*scale, float64(max(m.sizes.maxGroups, kr.base))))
	}
	st, err := timeGPU(rec, m.dev, warm{Runs: 1}, m.reps, record)
	if err != nil {
		return err
	}
	// Validate the timed grid too: a grid past the driver's limits shows here.
	per, err := kr.check(groups)
	if err != nil {
		return err
	}
	if !kr.fixed {
		row.Groups = int(groups)
	}
	row.MsMedian, row.MsMin, row.MsMax, row.MsTimes, row.Reps = st.Median, st.Min, st.Max, st.Times, st.Reps
	switch {
	case kr.bytes && kr.fixed:
		row.Bytes = per
		row.GBs = per / (st.Median * 1e-3) / 1e9
	case kr.bytes:
		row.Bytes = per * float64(groups)
		row.GBs = row.Bytes / (st.Median * 1e-3) / 1e9
	default:
		row.FLOPs = per * float64(groups)
		row.TFLOPs = row.FLOPs / (st.Median * 1e-3) / 1e12
	}
	row.Validated = true
	return nil
}

// buffers allocates zero-filled device buffers and returns them with a
// release func.
func (m *peakMeter) buffers(sizes ...uint64) ([]*vk.Buffer, func(), error) {
	var bs []*vk.Buffer
	release := func() {
		for _, b := range bs {
			b.Release()
		}
	}
	for _, n := range sizes {
		b, err := m.dev.NewBuffer(n)
		if err != nil {
			release()
			return nil, nil, err
		}
		bs = append(bs, b)
		if err := m.rec.Fill(b.Whole(), 0); err != nil {
			release()
			return nil, nil, err
		}
	}
	if err := m.rec.Submit(); err != nil {
		release()
		return nil, nil, err
	}
	return bs, release, nil
}

func download(b *vk.Buffer, n uint64) ([]byte, error) {
	out := make([]byte, n)
	return out, b.Download(0, out)
}

func (m *peakMeter) fma() (peakRow, error) {
	const wg, slots = 256, 4096
	row := peakRow{Kind: "fma", Scope: "invocation", Shape: "8 vec4 chains", Types: "f32", Kernel: peakFMAKey.Name(),
		Invocations: wg, Iters: m.sizes.fmaIters}
	m.note("peak: fp32 FMA")
	k, err := peakKernel(m.dev, peakFMAKey, wg)
	if err != nil {
		return row, err
	}
	bs, release, err := m.buffers(slots * 16)
	if err != nil {
		return row, err
	}
	defer release()
	push := shaders.PeakFMAPush{Iters: uint32(row.Iters), Slots: slots, M: 1, C: fmaAdd}
	err = m.time(&row, kernelRun{
		base: m.sizes.fmaGroups,
		dispatch: func(rec *vk.Recorder, groups uint32) error {
			return rec.Dispatch(k, [3]uint32{groups, 1, 1}, vk.PushBytes(&push), bs[0].Whole())
		},
		check: func(groups uint32) (float64, error) {
			b, err := download(bs[0], slots*16)
			if err != nil {
				return 0, err
			}
			return fmaFLOPs(1, wg, row.Iters), checkFMA(b, min(slots, int(groups)*wg), row.Iters)
		},
	})
	return row, err
}

// checkFMA compares the first n slots of peak_fma's output with the
// closed form.
func checkFMA(b []byte, n, iters int) error {
	for s := 0; s < n; s++ {
		for l := 0; l < 4; l++ {
			got := float64(math.Float32frombits(binary.LittleEndian.Uint32(b[16*s+4*l:])))
			if want := fmaExpected(s, l, iters, fmaAdd); got != want {
				return fmt.Errorf("peak_fma: slot %d component %d = %g, want %g", s, l, got, want)
			}
		}
	}
	return nil
}

func (m *peakMeter) coopmat(c coopCase) (peakRow, error) {
	s := c.shape
	row := peakRow{Kind: "coopmat", Scope: "subgroup", Shape: fmt.Sprintf("%dx%dx%d", s.M, s.N, s.K),
		M: int(s.M), N: int(s.N), K: int(s.K), A: s.A.String(), B: s.B.String(), C: s.C.String(), Result: s.Result.String(),
		Types: typesString(s.A, s.B, s.C, s.Result), Kernel: c.v.key.Name(), Iters: m.sizes.cmIters}
	m.note("peak: coopmat subgroup %s %s", row.Shape, row.Types)
	caps := m.dev.Caps()
	sub := max(int(caps.SubgroupSize), 1)
	wg := min(4*sub, int(caps.MaxWorkgroupInvocations))
	row.Invocations = wg
	in := componentBytes(c.v.in)
	aStride := (int(s.K)*in + 15) / 16
	bStride := (int(s.N)*in + 15) / 16
	inWords := 2*int(s.M)*aStride + 4*int(s.K)*bStride
	const slots = 256
	tile := int(s.M * s.N)
	accBytes := componentBytes(c.v.acc)
	k, err := peakKernel(m.dev, c.v.key, uint32(wg), s.M, s.N, s.K)
	if err != nil {
		return row, err
	}
	bs, release, err := m.buffers(uint64(16*inWords), uint64(slots*tile*accBytes), 16)
	if err != nil {
		return row, err
	}
	defer release()
	if err := m.rec.Fill(bs[0].Whole(), c.v.fill); err != nil {
		return row, err
	}
	push := shaders.PeakCoopPush{Iters: uint32(row.Iters), Slots: slots, AStride: uint32(aStride), BStride: uint32(bStride)}
	want := coopExpected(c.v, row.Iters, int(s.K))
	err = m.time(&row, kernelRun{
		base: m.sizes.cmGroups,
		dispatch: func(rec *vk.Recorder, groups uint32) error {
			return rec.Dispatch(k, [3]uint32{groups, 1, 1}, vk.PushBytes(&push), bs[0].Whole(), bs[1].Whole(), bs[2].Whole())
		},
		check: slotCheck(&row, bs[1], bs[2], wg, slots, tile, c.v.acc, want, func(nsg int) float64 {
			return coopFLOPs(1, nsg, row.Iters, s)
		}),
	})
	return row, err
}

func (m *peakMeter) cm2(c cm2Case) (peakRow, error) {
	row := peakRow{Kind: "coopmat", Scope: "workgroup", Shape: fmt.Sprintf("%dx%dx%d", c.BM, c.BN, c.BK),
		M: c.BM, N: c.BN, K: c.BK, A: c.v.in.String(), B: c.v.in.String(), C: c.v.acc.String(), Result: c.v.acc.String(),
		Types: typesString(c.v.in, c.v.in, c.v.acc, c.v.acc), Kernel: c.v.key.Name(), Invocations: c.WG, Iters: m.sizes.cm2Iters}
	m.note("peak: coopmat workgroup %s %s at %d invocations", row.Shape, row.Types, c.WG)
	inBytes := 2 * (c.BM*c.BK + c.BK*c.BN) // A [BM][BK] and B [BK][BN], 16-bit
	const slots = 16
	tile := c.BM * c.BN
	k, err := peakKernel(m.dev, c.v.key, uint32(c.BM), uint32(c.BN), uint32(c.BK), uint32(c.WG))
	if err != nil {
		return row, err
	}
	bs, release, err := m.buffers(uint64(inBytes), uint64(slots*tile*4), 16)
	if err != nil {
		return row, err
	}
	defer release()
	if err := m.rec.Fill(bs[0].Whole(), c.v.fill); err != nil {
		return row, err
	}
	push := shaders.PeakCoopPush{Iters: uint32(row.Iters), Slots: slots} // peak_cm2 reads no strides
	want := cm2Expected(row.Iters, c.BK)
	err = m.time(&row, kernelRun{
		base: m.sizes.cm2Groups,
		dispatch: func(rec *vk.Recorder, groups uint32) error {
			return rec.Dispatch(k, [3]uint32{groups, 1, 1}, vk.PushBytes(&push), bs[0].Whole(), bs[1].Whole(), bs[2].Whole())
		},
		check: func(groups uint32) (float64, error) {
			out, err := download(bs[1], uint64(slots*tile*4))
			if err != nil {
				return 0, err
			}
			if err := checkConst(row.Kernel, out, min(slots, int(groups))*tile, vk.ComponentF32, want); err != nil {
				return 0, err
			}
			return cm2FLOPs(1, row.Iters, c), nil
		},
	})
	return row, err
}

// slotCheck is the check of a kernel whose subgroups each store one tile
// of elems accumulators of comp into the next of slots slots of out, every
// element want, and report their count in info (reportedSubgroups): it
// checks the slots the run's groups filled and returns flops(subgroups per
// workgroup), the FLOPs of one workgroup.
func slotCheck(row *peakRow, out, info *vk.Buffer, wg, slots, elems int, comp vk.ComponentType, want float64, flops func(nsg int) float64) func(groups uint32) (float64, error) {
	return func(groups uint32) (float64, error) {
		nsg, err := reportedSubgroups(row, info, wg)
		if err != nil {
			return 0, err
		}
		b, err := download(out, uint64(slots*elems*componentBytes(comp)))
		if err != nil {
			return 0, err
		}
		if err := checkConst(row.Kernel, b, min(slots, int(groups)*nsg)*elems, comp, want); err != nil {
			return 0, err
		}
		return flops(nsg), nil
	}
}

// reportedSubgroups reads the subgroup count and size a peak kernel wrote
// to its info buffer, requires them to fill the workgroup of wg
// invocations, and sets the row's subgroup size.
func reportedSubgroups(row *peakRow, info *vk.Buffer, wg int) (int, error) {
	b, err := download(info, 8)
	if err != nil {
		return 0, err
	}
	nsg, size := int(binary.LittleEndian.Uint32(b)), int(binary.LittleEndian.Uint32(b[4:]))
	if nsg < 1 || nsg*size != wg {
		return 0, fmt.Errorf("%s: the kernel reports %d subgroups of %d in a workgroup of %d", row.Kernel, nsg, size, wg)
	}
	row.Subgroup = size
	return nsg, nil
}

// checkConst requires the first n elements of type t in b to equal want.
func checkConst(kernel string, b []byte, n int, t vk.ComponentType, want float64) error {
	sz := componentBytes(t)
	for i := 0; i < n; i++ {
		var got float64
		switch t {
		case vk.ComponentF32:
			got = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
		case vk.ComponentF16:
			got = float64(dtype.F16ToFloat32(binary.LittleEndian.Uint16(b[2*i:])))
		case vk.ComponentS32:
			got = float64(int32(binary.LittleEndian.Uint32(b[4*i:])))
		case vk.ComponentU32:
			got = float64(binary.LittleEndian.Uint32(b[4*i:]))
		default:
			return fmt.Errorf("%s: cannot check %s outputs", kernel, t)
		}
		if got != want {
			return fmt.Errorf("%s: output element %d (of %d, %d bytes each) = %g, want %g", kernel, i, n, sz, got, want)
		}
	}
	return nil
}

// copy measures a copy between two buffers of sizes.copyBytes: the
// peak_copy shader (16-byte loads and stores) or vkCmdCopyBuffer.
func (m *peakMeter) copy(method string) (peakRow, error) {
	n := m.sizes.copyBytes
	row := peakRow{Kind: "copy", Scope: "device", Shape: humanSize(n), Types: method, Kernel: peakCopyKey.Name()}
	if method != "shader" {
		row.Kernel = "vkCmdCopyBuffer"
	}
	m.note("peak: copy %s by %s", row.Shape, method)
	bs, release, err := m.buffers(n, n)
	if err != nil {
		return row, err
	}
	defer release()
	src, dst := bs[0], bs[1]
	// src: a fill word, and random blocks at the start, middle and end
	// that must arrive at the same offsets.
	if err := m.rec.Fill(src.Whole(), 0x9e3779b9); err != nil {
		return row, err
	}
	if err := m.rec.Submit(); err != nil {
		return row, err
	}
	const block = 4096
	offs := []uint64{0, (n / 2) &^ 15, n - block}
	blocks := make([][]byte, len(offs))
	for i, off := range offs {
		blocks[i] = make([]byte, block)
		for j := range blocks[i] {
			blocks[i][j] = byte(j*31 + i*7 + 1)
		}
		if err := src.Upload(off, blocks[i]); err != nil {
			return row, err
		}
	}
	check := func(uint32) (float64, error) {
		for i, off := range offs {
			got := make([]byte, block)
			if err := dst.Download(off, got); err != nil {
				return 0, err
			}
			if string(got) != string(blocks[i]) {
				return 0, fmt.Errorf("copy by %s: the %d bytes at offset %d differ from the source", method, block, off)
			}
		}
		w := make([]byte, 4)
		if err := dst.Download(n/4&^3, w); err != nil {
			return 0, err
		}
		if v := binary.LittleEndian.Uint32(w); v != 0x9e3779b9 {
			return 0, fmt.Errorf("copy by %s: word at %d = %#x, want the fill 0x9e3779b9", method, n/4&^3, v)
		}
		return copyTraffic(n), nil
	}
	kr := kernelRun{base: 1, check: check, fixed: true, bytes: true}
	if method == "shader" {
		const wg = 256
		row.Invocations = wg
		k, err := peakKernel(m.dev, peakCopyKey, wg)
		if err != nil {
			return row, err
		}
		elems := n / 16
		groups := uint32(min((elems+wg-1)/wg, uint64(m.sizes.copyGroups)))
		push := shaders.PeakCopyPush{N: uint32(elems)}
		kr.dispatch = func(rec *vk.Recorder, _ uint32) error {
			return rec.Dispatch(k, [3]uint32{groups, 1, 1}, vk.PushBytes(&push), src.Whole(), dst.Whole())
		}
		row.Groups = int(groups)
	} else {
		kr.dispatch = func(rec *vk.Recorder, _ uint32) error { return rec.Copy(dst.Whole(), src.Whole()) }
	}
	return row, m.time(&row, kr)
}

func typesString(a, b, c, r vk.ComponentType) string {
	return fmt.Sprintf("%s·%s+%s→%s", a, b, c, r)
}

// humanSize prints a byte count as "1 GiB", "16 MiB" or "512 KiB".
func humanSize(n uint64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// ---- The command ----

const peakSynopsis = "[-fresh] [-cache DIR] [-reps N] [-device SEL] [-json] [-tiles BM,BN,BK,WM,WN;...]"

func cmdPeak(args []string, stdout, stderr io.Writer) (err error) {
	fs := newFlags("peak", peakSynopsis, stderr)
	fresh := fs.Bool("fresh", false, "measure even when the cache has this device and driver (and update the cache)")
	cache := fs.String("cache", "", "cache directory (default $"+peakCacheEnv+", else "+defaultPeakCacheHint()+")")
	reps := fs.Int("reps", 0, "timed repeats per ceiling (default 10 on a GPU, 5 on a CPU device)")
	device := fs.String("device", "", "device index or name substring (default $VKLORA_DEVICE, else the first discrete GPU)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object (the cache file's content, with cached and file)")
	tiles := fs.String("tiles", "", "instead of the ceilings, time the subgroup-scope matmul's K loop at these tiles, fed from shared memory,\n"+
		"stage by stage, with its fragment loads alone and the bound its global loads allow from cache-resident reads\n"+
		"(not cached; with the driver's compile statistics where it reports them)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: lorabench peak %s\n", peakSynopsis)
		fmt.Fprintf(fs.Output(), "Measures the device's ceilings: cooperative-matrix TFLOP/s per reported shape (subgroup and\n"+
			"workgroup scope), scalar fp32 FMA TFLOP/s, copy GB/s. Cached per device and driver in\n"+
			"$%s, else %s (one JSON file per device and driver version);\n"+
			"matmul and bench divide their rates by it (frac_peak).\n", peakCacheEnv, defaultPeakCacheHint())
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *reps < 0 {
		return usagef("-reps must be ≥ 0 (got %d)", *reps)
	}
	var tileList []kernels.CoopTile
	if *tiles != "" {
		if tileList, err = parseTiles(*tiles); err != nil {
			return err
		}
	}
	dir, err := peakCacheDir(*cache)
	if err != nil {
		return err
	}
	dev, err := openDeviceWith(*device, tileList != nil)
	if err != nil {
		return err
	}
	defer func() {
		if msgs := vk.ValidationMessages(); len(msgs) > 0 && err == nil {
			err = fmt.Errorf("Vulkan validation reported %d messages:\n%s", len(msgs), strings.Join(msgs, "\n"))
		}
		if rerr := dev.Release(); rerr != nil && err == nil {
			err = rerr
		}
	}()
	vk.ValidationMessages()
	if tileList != nil {
		rows, err := measureTiles(dev, tileList, *reps)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(map[string]any{"device": dev.Info().String(), "rows": rows})
		}
		writeTileTable(stdout, dev, rows)
		if dev.Caps().PipelineStatistics {
			printKernelStats(dev, stdout)
		}
		return nil
	}
	var status io.Writer // one line per measurement, on a terminal only
	if term.IsTerminal(stderr) {
		status = stderr
	}
	doc, err := loadOrMeasurePeak(dev, dir, *fresh, *reps, status, stderr)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(doc)
	}
	writePeakTable(stdout, doc)
	return nil
}

// writePeakTable prints one row per ceiling.
func writePeakTable(w io.Writer, d *peakDoc) {
	fmt.Fprintf(w, "device: %s\n", d.Device)
	src := fmt.Sprintf("measured now in %.1f s, cached in %s", d.Seconds, d.File)
	if d.Cached {
		src = fmt.Sprintf("from the cache %s (measured %s in %.1f s; -fresh measures again)", d.File, d.Measured.Format(time.RFC3339), d.Seconds)
	} else if d.File == "" {
		src = fmt.Sprintf("measured now in %.1f s, not cached", d.Seconds)
	}
	fmt.Fprintf(w, "peak: %s\n", src)
	fmt.Fprintf(w, "GPU timestamps, median of reps after warm-up; coopmat FLOP = 2·M·N·K per MulAdd, fma 2 per FMA, copy bytes = read + written\n")
	format := "%-8s %-10s %-13s %-22s %9s %9s %10s %10s %10s %s\n"
	fmt.Fprintf(w, format, "kind", "scope", "shape", "types", "TFLOP/s", "GB/s", "ms median", "ms min", "ms max", "launch")
	for _, r := range d.Rows {
		launch := ""
		switch {
		case r.Kind == "copy" && r.Groups == 0:
			launch = "transfer"
		case r.Subgroup > 0:
			launch = fmt.Sprintf("%d×%d (subgroup %d), %d iters", r.Groups, r.Invocations, r.Subgroup, r.Iters)
		case r.Iters > 0:
			launch = fmt.Sprintf("%d×%d, %d iters", r.Groups, r.Invocations, r.Iters)
		default:
			launch = fmt.Sprintf("%d×%d", r.Groups, r.Invocations)
		}
		if !r.Validated {
			fmt.Fprintf(w, format, r.Kind, r.Scope, r.Shape, r.Types, "FAILED", "-", "-", "-", "-", r.Error)
			continue
		}
		tf, gb := "-", "-"
		if r.Kind == "copy" {
			gb = num(r.GBs)
		} else {
			tf = tflops(r.TFLOPs)
		}
		fmt.Fprintf(w, format, r.Kind, r.Scope, r.Shape, r.Types, tf, gb, ms(r.MsMedian), ms(r.MsMin), ms(r.MsMax), launch)
	}
	for _, s := range d.Skipped {
		fmt.Fprintf(w, "not measured: %s\n", s)
	}
}

// tflops prints a TFLOP/s rate with three significant digits at least.
func tflops(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.4f", v)
}

// ---- frac_peak ----

// coopRate is the best validated cooperative-matrix rate (either scope)
// with inputs of type in and fp32 accumulation, 0 when none was measured.
func (d *peakDoc) coopRate(in vk.ComponentType) float64 {
	best := 0.0
	for _, r := range d.Rows {
		if r.Kind == "coopmat" && r.Validated && r.A == in.String() && r.B == in.String() && r.C == "f32" && r.Result == "f32" {
			best = max(best, r.TFLOPs)
		}
	}
	return best
}

// rate is the best validated rate of a kind ("fma": TFLOP/s, "copy": GB/s).
func (d *peakDoc) rate(kind string) float64 {
	best := 0.0
	for _, r := range d.Rows {
		if r.Kind == kind && r.Validated {
			best = max(best, r.TFLOPs, r.GBs)
		}
	}
	return best
}

// rowPeak is the denominator of a row's frac_peak: the best
// cooperative-matrix rate for its dtype (16-bit inputs, fp32
// accumulation, as the engine runs them) when the row ran on cooperative
// matrices, else the scalar fp32 FMA rate; and its name.
func (d *peakDoc) rowPeak(dt dtype.DType, coop bool) (float64, string) {
	comp, ok := map[dtype.DType]vk.ComponentType{dtype.F16: vk.ComponentF16, dtype.BF16: vk.ComponentBF16}[dt]
	if r := d.coopRate(comp); coop && ok && r > 0 {
		return r, "coopmat_" + dt.String()
	}
	return d.rate("fma"), "fma_f32"
}

// rowOnCoopMat says whether the engine runs a row's products on
// cooperative matrices: a 16-bit dtype with a cooperative path on this
// device (either scope) and an output of at least 64×64 (smaller outputs
// and the rank products take the scalar or narrow kernels, lora/doc.go).
// For layer ops M is the tokens and N the layer's output width.
func rowOnCoopMat(eng *lora.Engine, r *result) bool {
	dt, err := dtype.Parse(r.DType)
	if err != nil || dt == dtype.F32 {
		return false
	}
	return (eng.CoopMat(dt) || eng.CoopMat2(dt)) && r.M >= 64 && r.N >= 64
}

// annotate sets a validated row's frac_peak (its TFLOP/s over rowPeak),
// peak_basis and frac_bw (its GB/s over the copy bandwidth). A nil doc
// (-no-peak, or the measurement failed) leaves the row alone.
func (d *peakDoc) annotate(res *result, eng *lora.Engine) {
	if d == nil || !res.Validated {
		return
	}
	if p, basis := d.rowPeak(dtypeOf(res.DType), rowOnCoopMat(eng, res)); p > 0 {
		res.FracPeak, res.PeakBasis = jsonNum(res.TFLOPs/p), basis
	}
	if bw := d.rate("copy"); bw > 0 {
		res.FracBW = jsonNum(res.GBs / bw)
	}
}

func dtypeOf(s string) dtype.DType {
	d, _ := dtype.Parse(s)
	return d
}

// runPeak returns the peak of the run's device for frac_peak: from the
// cache, else measured now (and cached); nil with -no-peak. A failed
// measurement is reported on stderr and leaves the rows without frac_peak.
func runPeak(dev *vk.Device, o *runFlags, stderr io.Writer) *peakDoc {
	if o.noPeak {
		return nil
	}
	dir, err := peakCacheDir("")
	if err == nil {
		var doc *peakDoc
		if doc, err = loadOrMeasurePeak(dev, dir, false, 0, nil, stderr); err == nil {
			if !doc.Cached {
				fmt.Fprintf(stderr, "peak: measured the device's ceilings for frac_peak in %.1f s (`lorabench peak` lists them; -no-peak skips)\n", doc.Seconds)
			}
			return doc
		}
	}
	fmt.Fprintf(stderr, "peak: no frac_peak: %v\n", err)
	return nil
}

// fracString prints a frac_peak for the table, "-" when absent.
func fracString(f jsonNum) string {
	if f == 0 || math.IsNaN(float64(f)) {
		return "-"
	}
	return fmt.Sprintf("%.3f", float64(f))
}
