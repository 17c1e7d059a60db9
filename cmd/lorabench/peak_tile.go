package main

// peak_tile.go: `lorabench peak -tiles LIST`, the subgroup-scope matmul's
// inner loop at given tiles, fed from a tile staged once in shared memory
// (shaders/peak_tile.comp runs the matmul's own TILE_MMA). Each tile is
// timed at three stages, each adding back one part of a single-buffered K
// step: fragment loads from shared memory and the multiplies; then the
// step's two barriers; then its shared-memory stores. Beside the
// register-resident peak and `lorabench matmul` at the same tile
// (VKLORA_COOPMAT_TILE), the stages say where the matmul's time goes.
//
// Two more rows bound the tile from its two memories. The fragment loads
// alone, without the multiplies, give the shared-memory load rate of the
// tile's own coopMatLoads, shown as the TFLOP/s those loads would feed.
// Reads of a buffer small enough to stay in the last-level cache
// (shaders/peak_read.comp, once per run) give the rate at which global
// loads of tiles that other workgroups already fetched can arrive; times
// the tile's BM·BN/(BM+BN) FLOP per loaded byte, that is the most its
// global loads allow. Not cached: it is a diagnosis, not a ceiling
// frac_peak divides by.

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/vklora/vklora/kernels"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
)

// tileStages names peak_tile's STAGE values, in order.
var tileStages = []string{"fragment loads + multiplies", "+ 2 barriers per K step", "+ shared stores per K step",
	"fragment loads alone"}

// loadsOnlyStage is tileStages' fragment-loads-only stage: its inputs are
// zeros, so its one multiply leaves every accumulator exactly 0.
const loadsOnlyStage = 3

// cacheReads names the cache-resident read row.
const cacheReads = "cache-resident reads"

// parseTiles reads "BM,BN,BK,WM,WN;..." (VKLORA_COOPMAT_TILE's form).
func parseTiles(s string) ([]kernels.CoopTile, error) {
	var out []kernels.CoopTile
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		f := strings.Split(part, ",")
		if len(f) != 5 {
			return nil, usagef("-tiles: %q is not BM,BN,BK,WM,WN", part)
		}
		var v [5]int
		for i, x := range f {
			n, err := strconv.Atoi(strings.TrimSpace(x))
			if err != nil || n <= 0 || n > 1024 {
				return nil, usagef("-tiles: %q: %q is not a size in 1..1024", part, x)
			}
			v[i] = n
		}
		out = append(out, kernels.CoopTile{BM: v[0], BN: v[1], BK: v[2], WM: v[3], WN: v[4]})
	}
	if len(out) == 0 {
		return nil, usagef("-tiles: no tile in %q", s)
	}
	return out, nil
}

// tileShape is the shape the tile loop runs on: the device's first
// subgroup-scope f16·f16+f32 shape.
func tileShape(caps *vk.Caps) (vk.CoopMatShape, bool) {
	for _, s := range caps.CoopMatShapes {
		if s.SubgroupScope && !s.Saturating && s.Multiplies(vk.ComponentF16, vk.ComponentF32) {
			return s, true
		}
	}
	return vk.CoopMatShape{}, false
}

// tileCheck says why a tile cannot run on shape s with the device's
// subgroup size and limits, or returns its fragment grid and workgroup size.
func tileCheck(t kernels.CoopTile, s vk.CoopMatShape, caps *vk.Caps) (fm, fn uint8, wg int, err error) {
	tm, tn, tk := int(s.M), int(s.N), int(s.K)
	switch {
	case t.WM%tm != 0 || t.WN%tn != 0:
		return 0, 0, 0, fmt.Errorf("subgroup tile %d×%d is not a multiple of the %d×%d matrix", t.WM, t.WN, tm, tn)
	case t.BM%t.WM != 0 || t.BN%t.WN != 0:
		return 0, 0, 0, fmt.Errorf("the %d×%d subgroup tile does not divide the %d×%d workgroup tile", t.WM, t.WN, t.BM, t.BN)
	case t.BK%tk != 0 || t.BK%8 != 0:
		return 0, 0, 0, fmt.Errorf("BK %d is not a multiple of %d and of 8", t.BK, tk)
	}
	fm, fn = uint8(t.WM/tm), uint8(t.WN/tn)
	known := false
	for _, f := range shaders.CoopFrags {
		known = known || (f[0] == fm && f[1] == fn)
	}
	if !known {
		return 0, 0, 0, fmt.Errorf("fragment grid %d×%d is not one of %v", fm, fn, shaders.CoopFrags)
	}
	wg = (t.BM / t.WM) * (t.BN / t.WN) * max(int(caps.SubgroupSize), 1)
	if wg > int(caps.MaxWorkgroupInvocations) {
		return 0, 0, 0, fmt.Errorf("%d invocations exceed the device's %d", wg, caps.MaxWorkgroupInvocations)
	}
	// One padded buffer: A [BM][BK/8+1] and B [BN][BK/8+1] uvec4s.
	if words := (t.BM + t.BN) * (t.BK/8 + 1); 16*words > int(caps.MaxSharedMemory) {
		return 0, 0, 0, fmt.Errorf("its %d B of shared memory exceed the device's %d", 16*words, caps.MaxSharedMemory)
	}
	return fm, fn, wg, nil
}

// measureTiles times every tile at every stage. A tile that cannot run
// gives one row with its reason.
func measureTiles(dev *vk.Device, tiles []kernels.CoopTile, reps int) ([]peakRow, error) {
	caps := dev.Caps()
	s, ok := tileShape(caps)
	if !caps.CoopMat || !ok {
		return nil, fmt.Errorf("-tiles: %s has no subgroup-scope f16·f16+f32 cooperative matrices", dev.Info().Name)
	}
	rec, err := dev.NewRecorder()
	if err != nil {
		return nil, err
	}
	defer rec.Release()
	m := &peakMeter{dev: dev, rec: rec, sizes: sizesFor(dev.Info()), reps: reps, first: true}
	if m.reps <= 0 {
		m.reps = m.sizes.defaultRep
	}
	var rows []peakRow
	r, err := m.settle(m.read())
	if err != nil {
		return nil, err
	}
	rows = append(rows, r)
	for _, t := range tiles {
		name := fmt.Sprintf("%dx%dx%d/%dx%d", t.BM, t.BN, t.BK, t.WM, t.WN)
		fm, fn, wg, err := tileCheck(t, s, caps)
		if err != nil {
			rows = append(rows, peakRow{Kind: "tile", Scope: "subgroup", Shape: name, Error: err.Error()})
			continue
		}
		for stage := range tileStages {
			r, err := m.settle(m.tile(t, s, fm, fn, wg, stage))
			if err != nil {
				return nil, err
			}
			r.Shape = name
			rows = append(rows, r)
		}
		r, err := m.settle(m.direct(t, s, fm, fn, wg))
		if err != nil {
			return nil, err
		}
		r.Shape = name
		rows = append(rows, r)
	}
	return rows, nil
}

// tile times peak_tile at one tile and stage.
func (m *peakMeter) tile(t kernels.CoopTile, s vk.CoopMatShape, fm, fn uint8, wg, stage int) (peakRow, error) {
	key := shaders.PeakKey{Kind: shaders.PeakTile, In: shaders.PeakF16, FM: fm, FN: fn}
	row := peakRow{Kind: "tile", Scope: "subgroup", M: int(s.M), N: int(s.N), K: int(s.K),
		A: "f16", B: "f16", C: "f32", Result: "f32", Types: tileStages[stage], Kernel: key.Name(),
		Invocations: wg, Iters: m.sizes.cmIters / max(1, t.BK/int(s.K))}
	k, err := peakKernel(m.dev, key, uint32(wg), s.M, s.N, s.K,
		uint32(t.BM), uint32(t.BN), uint32(t.BK), uint32(t.WM), uint32(t.WN), uint32(stage))
	if err != nil {
		return row, err
	}
	const slots = 256
	tileElems := int(s.M * s.N)
	bs, release, err := m.buffers(16, uint64(slots*tileElems*4), 16)
	if err != nil {
		return row, err
	}
	defer release()
	// Every accumulator element gains BK·2^-8 per iteration; the stored
	// sum adds FM·FN accumulators. The loads-only stage reads zeros.
	want := float64(fm) * float64(fn) * float64(row.Iters) * float64(t.BK) / 256
	if stage == loadsOnlyStage {
		want = 0
	} else if err := m.rec.Fill(bs[0].Whole(), fillF16); err != nil {
		return row, err
	}
	// NaN in every slot, so that a slot the kernel did not store fails.
	if err := m.rec.Fill(bs[1].Whole(), 0xffffffff); err != nil {
		return row, err
	}
	push := shaders.PeakTilePush{Iters: uint32(row.Iters), Slots: slots}
	err = m.time(&row, kernelRun{
		base: max(1, m.sizes.cmGroups/4),
		dispatch: func(rec *vk.Recorder, groups uint32) error {
			return rec.Dispatch(k, [3]uint32{groups, 1, 1}, vk.PushBytes(&push), bs[0].Whole(), bs[1].Whole(), bs[2].Whole())
		},
		// Per workgroup: nsg subgroups × iters × FM·FN MulAdds of TM×TN×BK
		// (BK/TK matrix steps of 2·TM·TN·TK each).
		check: slotCheck(&row, bs[1], bs[2], wg, slots, tileElems, vk.ComponentF32, want, func(nsg int) float64 {
			return float64(nsg) * float64(row.Iters) * float64(fm) * float64(fn) * 2 * float64(s.M) * float64(s.N) * float64(t.BK)
		}),
	})
	if err == nil && stage == loadsOnlyStage {
		// Per K step of TK a subgroup loads FM A fragments of TM×TK and FN
		// B fragments of TK×TN, 2 bytes each, for FM·FN multiplies of
		// 2·TM·TN·TK FLOP.
		perFLOP := float64(int(fm)*int(s.M)+int(fn)*int(s.N)) / (float64(fm) * float64(fn) * float64(s.M) * float64(s.N))
		row.Bytes = row.FLOPs * perFLOP
		row.GBs = row.TFLOPs * 1e3 * perFLOP
	}
	return row, err
}

// read times peak_read over a buffer of sizes.readBytes, which a GPU's
// last-level cache holds, filled with one word: every element of dst must
// be reads times it.
func (m *peakMeter) read() (peakRow, error) {
	const wg, reads, word = 256, 256, 0x01000193
	n := m.sizes.readBytes
	row := peakRow{Kind: "read", Scope: "device", Shape: humanSize(n), Types: cacheReads, Kernel: peakReadKey.Name(),
		Invocations: wg, Iters: reads}
	k, err := peakKernel(m.dev, peakReadKey, wg)
	if err != nil {
		return row, err
	}
	bs, release, err := m.buffers(n, n)
	if err != nil {
		return row, err
	}
	defer release()
	if err := m.rec.Fill(bs[0].Whole(), word); err != nil {
		return row, err
	}
	elems := n / 16
	push := shaders.PeakReadPush{Mask: uint32(elems - 1), Reads: reads}
	err = m.time(&row, kernelRun{
		base: 64, bytes: true,
		dispatch: func(rec *vk.Recorder, groups uint32) error {
			if err := rec.Fill(bs[1].Whole(), 0); err != nil {
				return err
			}
			return rec.Dispatch(k, [3]uint32{groups, 1, 1}, vk.PushBytes(&push), bs[0].Whole(), bs[1].Whole())
		},
		check: func(groups uint32) (float64, error) {
			written := min(elems, uint64(groups)*wg)
			out, err := download(bs[1], written*16)
			if err != nil {
				return 0, err
			}
			w := uint32(word)
			want := w * reads // the sum wraps, as the shader's does
			if err := checkConst(row.Kernel, out, int(written*4), vk.ComponentU32, float64(want)); err != nil {
				return 0, err
			}
			return float64(wg) * reads * 16, nil
		},
	})
	return row, err
}

// directSize is the product peak_direct computes at tile t: M = N = K =
// 8192 on a GPU (rounded down to the tile), a few tiles on a CPU device.
func directSize(t kernels.CoopTile, info vk.DeviceInfo) (m, n, k int) {
	if info.Type == vk.DeviceCPU {
		return 2 * t.BM, 2 * t.BN, 4 * t.BK
	}
	const s = 8192
	return max(t.BM, s/t.BM*t.BM), max(t.BN, s/t.BN*t.BN), max(t.BK, s/t.BK*t.BK)
}

// direct times peak_direct, the matmul with fragments loaded straight from
// the buffers (no shared memory, no barriers), on A and B filled with 2^-4,
// so that every element of C is K·2^-8.
func (m *peakMeter) direct(t kernels.CoopTile, s vk.CoopMatShape, fm, fn uint8, wg int) (peakRow, error) {
	key := shaders.PeakKey{Kind: shaders.PeakDirect, In: shaders.PeakF16, FM: fm, FN: fn}
	M, N, K := directSize(t, m.dev.Info())
	row := peakRow{Kind: "tile", Scope: "subgroup", M: int(s.M), N: int(s.N), K: int(s.K),
		A: "f16", B: "f16", C: "f32", Result: "f32", Types: fmt.Sprintf("direct from global, %d×%d×%d", M, N, K),
		Kernel: key.Name(), Invocations: wg, Iters: K / t.BK}
	k, err := peakKernel(m.dev, key, uint32(wg), s.M, s.N, s.K,
		uint32(t.BM), uint32(t.BN), uint32(t.BK), uint32(t.WM), uint32(t.WN))
	if err != nil {
		return row, err
	}
	cBytes := uint64(M) * uint64(N) * 4
	bs, release, err := m.buffers(uint64(M)*uint64(K)*2, uint64(N)*uint64(K)*2, cBytes, 16)
	if err != nil {
		return row, err
	}
	defer release()
	for _, b := range bs[:2] {
		if err := m.rec.Fill(b.Whole(), fillF16); err != nil {
			return row, err
		}
	}
	push := shaders.PeakDirectPush{M: uint32(M), N: uint32(N), K: uint32(K)}
	grid := [3]uint32{uint32(N / t.BN), uint32(M / t.BM), 1}
	row.Groups = int(grid[0] * grid[1])
	err = m.time(&row, kernelRun{
		base: 1, fixed: true,
		dispatch: func(rec *vk.Recorder, _ uint32) error {
			return rec.Dispatch(k, grid, vk.PushBytes(&push), bs[0].Whole(), bs[1].Whole(), bs[2].Whole(), bs[3].Whole())
		},
		check: func(uint32) (float64, error) {
			_, err := reportedSubgroups(&row, bs[3], wg)
			if err != nil {
				return 0, err
			}
			out, err := download(bs[2], cBytes)
			if err != nil {
				return 0, err
			}
			if err := checkConst(row.Kernel, out, M*N, vk.ComponentF32, float64(K)/256); err != nil {
				return 0, err
			}
			return 2 * float64(M) * float64(N) * float64(K), nil
		},
	})
	return row, err
}

// writeTileTable prints the stages of each tile, with each stage's rate
// as a fraction of the first.
func writeTileTable(w io.Writer, dev *vk.Device, rows []peakRow) {
	fmt.Fprintf(w, "device: %s\n", dev.Info().Name)
	fmt.Fprintf(w, "the subgroup-scope matmul's K loop fed from a tile staged once (no global loads); GPU timestamps, median of reps\n")
	reads := 0.0 // GB/s of the cache-resident reads, 0 if they failed
	for _, r := range rows {
		if r.Kind != "read" {
			continue
		}
		if r.Error != "" || !r.Validated {
			fmt.Fprintf(w, "%s: FAILED %s\n", cacheReads, r.Error)
			continue
		}
		reads = r.GBs
		fmt.Fprintf(w, "%s: %.0f GB/s (%s buffer, %s, %d×%d, %d reads each); a tile's global loads allow this × BM·BN/(BM+BN) FLOP/B\n",
			cacheReads, r.GBs, r.Shape, r.Kernel, r.Groups, r.Invocations, r.Iters)
	}
	format := "%-22s %-38s %9s %8s %10s %s\n"
	fmt.Fprintf(w, format, "tile BMxBNxBK/WMxWN", "stage", "TFLOP/s", "of first", "ms median", "launch")
	first, shape := 0.0, ""
	bound := func() { // the global loads' bound of the tile just printed
		var bm, bn int
		if reads == 0 || shape == "" {
			return
		}
		if _, err := fmt.Sscanf(shape, "%dx%d", &bm, &bn); err != nil || bm+bn == 0 {
			return
		}
		perByte := float64(bm) * float64(bn) / float64(bm+bn)
		fmt.Fprintf(w, format, shape, "global loads alone, from cache", tflops(reads*perByte/1e3), "-", "-",
			fmt.Sprintf("%.0f GB/s × %.1f FLOP/B", reads, perByte))
	}
	for _, r := range rows {
		if r.Kind == "read" {
			continue
		}
		if r.Shape != shape {
			bound()
			shape = r.Shape
		}
		if r.Error != "" || !r.Validated {
			fmt.Fprintf(w, format, r.Shape, r.Types, "FAILED", "-", "-", r.Error)
			continue
		}
		if r.Types == tileStages[0] || r.Kernel == "" {
			first = r.TFLOPs
		}
		frac := "-"
		if first > 0 {
			frac = fmt.Sprintf("%.3f", r.TFLOPs/first)
		}
		launch := fmt.Sprintf("%d×%d (subgroup %d), %d iters, %s", r.Groups, r.Invocations, r.Subgroup, r.Iters, r.Kernel)
		if r.Types == tileStages[loadsOnlyStage] {
			launch = fmt.Sprintf("%.0f GB/s of fragment loads; %s", r.GBs, launch)
		}
		fmt.Fprintf(w, format, r.Shape, r.Types, tflops(r.TFLOPs), frac, ms(r.MsMedian), launch)
	}
	bound()
}
