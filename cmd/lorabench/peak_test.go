package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
)

// TestMain keeps every test of the package off the user's peak cache: the
// matmul and bench tests measure the peak once (for frac_peak) into a
// temporary directory and read it from there afterwards.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vklora-peak-test-")
	if err != nil {
		panic(err)
	}
	if os.Getenv(peakCacheEnv) == "" {
		os.Setenv(peakCacheEnv, dir)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func cmShape(m, n, k uint32, a, c vk.ComponentType) vk.CoopMatShape {
	return vk.CoopMatShape{M: m, N: n, K: k, A: a, B: a, C: c, Result: c, SubgroupScope: true}
}

func TestCoopMatCases(t *testing.T) {
	f16, f32, bf16 := vk.ComponentF16, vk.ComponentF32, vk.ComponentBF16
	sat := cmShape(16, 8, 32, vk.ComponentS8, vk.ComponentS32)
	sat.Saturating = true
	wgScope := cmShape(16, 16, 16, f16, f32)
	wgScope.SubgroupScope = false
	caps := &vk.Caps{CoopMat: true, Float16: true, Int8: true, CoopMatShapes: []vk.CoopMatShape{
		cmShape(16, 16, 16, f16, f32),
		cmShape(16, 16, 16, f16, f32), // reported twice: measured once
		cmShape(16, 8, 16, f16, f16),
		cmShape(16, 16, 16, bf16, f32), // no BFloat16CoopMat: skipped
		cmShape(16, 8, 32, vk.ComponentS8, vk.ComponentS32),
		cmShape(16, 8, 32, vk.ComponentU8, vk.ComponentU32),
		sat,
		wgScope,
		cmShape(16, 16, 8, f32, f32), // no kernel
		{M: 16, N: 16, K: 16, A: f16, B: f16, C: f32, Result: f16, SubgroupScope: true}, // C ≠ Result: no kernel
	}}
	cases, skipped := coopMatCases(caps)
	var got []string
	for _, c := range cases {
		got = append(got, c.v.key.Name()+" "+c.shape.String())
	}
	want := []string{
		"peak_coopmat_f16 16x16x16 f16·f16+f32→f32",
		"peak_coopmat_f16_c16 16x8x16 f16·f16+f16→f16",
		"peak_coopmat_i8 16x8x32 s8·s8+s32→s32",
		"peak_coopmat_u8 16x8x32 u8·u8+u32→u32",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("cases:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if len(skipped) != 5 {
		t.Errorf("%d skipped, want 5 (bf16 type, saturating, workgroup scope, f32, C≠Result):\n  %s", len(skipped), strings.Join(skipped, "\n  "))
	}
	for _, s := range []string{"bf16 shader type", "saturating", "not subgroup scope", "no peak kernel"} {
		if !strings.Contains(strings.Join(skipped, "\n"), s) {
			t.Errorf("no skipped line mentions %q:\n  %s", s, strings.Join(skipped, "\n  "))
		}
	}

	// With the bf16 feature the bf16 shape is measured, with the bf16 kernel.
	caps.BFloat16CoopMat = true
	cases, _ = coopMatCases(caps)
	if len(cases) != 5 || cases[2].v.key.Name() != "peak_coopmat_bf16" {
		t.Errorf("with BFloat16CoopMat: %d cases, third %+v; want 5, the third peak_coopmat_bf16", len(cases), cases[2])
	}
	// Without fp16 arithmetic no f16 kernel runs; without the extension, nothing.
	caps.Float16 = false
	cases, _ = coopMatCases(caps)
	for _, c := range cases {
		if c.v.in == f16 {
			t.Errorf("f16 case %s without Float16", c.shape)
		}
	}
	if cases, skipped := coopMatCases(&vk.Caps{CoopMatShapes: caps.CoopMatShapes}); len(cases)+len(skipped) != 0 {
		t.Errorf("without VK_KHR_cooperative_matrix: %d cases, %d skipped; want none", len(cases), len(skipped))
	}
}

func TestCM2Cases(t *testing.T) {
	if cases, skipped := cm2Cases(&vk.Caps{}); len(cases) != 0 || len(skipped) != 1 || !strings.Contains(skipped[0], "no VK_NV_cooperative_matrix2") {
		t.Errorf("no coopmat2: %v %v", cases, skipped)
	}
	flex := func(g uint32, in, acc vk.ComponentType, inv uint32) vk.CoopMat2Shape {
		return vk.CoopMat2Shape{MGranularity: g, NGranularity: g, KGranularity: g, A: in, B: in, C: acc, Result: acc,
			WorkgroupScope: true, Invocations: inv}
	}
	caps := &vk.Caps{CoopMat2: true, CoopMat2Flexible: true, Float16: true, CoopMat2MaxWorkgroupSize: 256,
		CoopMat2Shapes: []vk.CoopMat2Shape{
			flex(16, vk.ComponentF16, vk.ComponentF32, 128),
			flex(16, vk.ComponentF16, vk.ComponentF32, 256),
			flex(16, vk.ComponentF16, vk.ComponentF32, 512),  // above the workgroup limit
			flex(48, vk.ComponentF16, vk.ComponentF32, 128),  // no tile is a multiple of 48
			flex(16, vk.ComponentF16, vk.ComponentF16, 128),  // no kernel
			flex(16, vk.ComponentBF16, vk.ComponentF32, 128), // no bf16 feature
		}}
	cases, skipped := cm2Cases(caps)
	var got []string
	for _, c := range cases {
		got = append(got, fmt.Sprintf("%s %d %d %d %d", c.v.key.Name(), c.BM, c.BN, c.BK, c.WG))
	}
	want := []string{"peak_cm2_f16 128 128 32 128", "peak_cm2_f16 64 64 32 128", "peak_cm2_f16 128 128 32 256", "peak_cm2_f16 64 64 32 256"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("cases %q, want %q", got, want)
	}
	if len(skipped) != 2 {
		t.Errorf("skipped %q, want the f16 accumulator and the bf16 type", skipped)
	}
	caps.CoopMat2MaxDimension = 64
	caps.BFloat16CoopMat = true
	cases, _ = cm2Cases(caps)
	for _, c := range cases {
		if c.BM > 64 || c.BN > 64 {
			t.Errorf("tile %dx%d above the 64 dimension limit", c.BM, c.BN)
		}
	}
	if len(cases) != 3 || cases[2].v.key.Name() != "peak_cm2_bf16" {
		t.Errorf("max dimension 64 with bf16: %+v; want 64x64x32 at 128 and 256 for f16, at 128 for bf16", cases)
	}
}

func TestPeakArithmetic(t *testing.T) {
	s := cmShape(16, 8, 32, vk.ComponentF16, vk.ComponentF32)
	// 3 groups of 4 subgroups, 10 iterations of 8 MulAdds of 2·16·8·32.
	if got, want := coopFLOPs(3, 4, 10, s), 3.0*4*10*8*2*16*8*32; got != want {
		t.Errorf("coopFLOPs = %g, want %g", got, want)
	}
	if got, want := cm2FLOPs(5, 7, cm2Case{BM: 128, BN: 64, BK: 32}), 5.0*7*2*128*64*32; got != want {
		t.Errorf("cm2FLOPs = %g, want %g", got, want)
	}
	// peak_fma: 4 repeats of 8 vec4 chains per iteration, 2 FLOP per FMA.
	if got, want := fmaFLOPs(2, 256, 64), 2.0*256*64*4*8*4*2; got != want {
		t.Errorf("fmaFLOPs = %g, want %g", got, want)
	}
	if got := copyTraffic(1 << 30); got != 2<<30 {
		t.Errorf("copyTraffic(1 GiB) = %g, want 2 GiB (read + write)", got)
	}
	// Subgroup coopmat: 8 accumulators × iters × K × a·b with a = b = 2^-4.
	if got, want := coopExpected(coopVariants[0], 1024, 16), 8.0*1024*16/256; got != want {
		t.Errorf("coopExpected f16 = %g, want %g", got, want)
	}
	if got, want := cm2Expected(512, 32), 512.0*32/256; got != want {
		t.Errorf("cm2Expected = %g, want %g", got, want)
	}
	if got, want := coopExpected(coopVariants[3], 1024, 32), 8.0*1024*32; got != want {
		t.Errorf("coopExpected i8 = %g, want %g", got, want)
	}
	// The f16 accumulator stays exact: each of the 8 partial sums is a
	// multiple of K/256 below 2^11 of them, and so is their total.
	for _, k := range []int{8, 16, 32} {
		step, acc := float32(float64(k)/256), float32(0)
		for i := 0; i < 1024; i++ { // the GPU sizes' iterations
			acc = dtype.Round(dtype.F16, acc+step)
		}
		if sum := dtype.Round(dtype.F16, 8*acc); float64(sum) != coopExpected(coopVariants[1], 1024, k) {
			t.Errorf("K=%d: f16 accumulation gives %g, coopExpected %g", k, sum, coopExpected(coopVariants[1], 1024, k))
		}
	}
	// The fma closed form against the chains run in float32.
	for _, slot := range []int{0, 5, 13} {
		for l := 0; l < 4; l++ {
			var sum float32
			for j := 0; j < 8; j++ {
				x := float32(4*j+l) + float32(slot&7)
				for i := 0; i < 4*300; i++ {
					x = x*1 + float32(fmaAdd)
				}
				sum += x
			}
			if want := fmaExpected(slot, l, 300, fmaAdd); float64(sum) != want {
				t.Errorf("slot %d component %d: chains give %g, fmaExpected %g", slot, l, sum, want)
			}
		}
	}
}

func TestCheckOutputs(t *testing.T) {
	const n, iters = 16, 40
	b := make([]byte, 16*n)
	for s := 0; s < n; s++ {
		for l := 0; l < 4; l++ {
			binary.LittleEndian.PutUint32(b[16*s+4*l:], math.Float32bits(float32(fmaExpected(s, l, iters, fmaAdd))))
		}
	}
	if err := checkFMA(b, n, iters); err != nil {
		t.Fatal(err)
	}
	if err := checkFMA(b, n, iters+1); err == nil {
		t.Error("checkFMA accepted the output of another iteration count")
	}
	binary.LittleEndian.PutUint32(b[16*9+8:], 0)
	if err := checkFMA(b, n, iters); err == nil || !strings.Contains(err.Error(), "slot 9 component 2") {
		t.Errorf("checkFMA with slot 9 zeroed: %v", err)
	}
	if err := checkFMA(b, 9, iters); err != nil {
		t.Errorf("checkFMA of the first 9 slots: %v", err)
	}

	h := make([]byte, 2*8)
	for i := 0; i < 8; i++ {
		binary.LittleEndian.PutUint16(h[2*i:], dtype.F16FromFloat32(32))
	}
	if err := checkConst("k", h, 8, vk.ComponentF16, 32); err != nil {
		t.Error(err)
	}
	if err := checkConst("k", h, 8, vk.ComponentF16, 31); err == nil {
		t.Error("checkConst f16 accepted 32 for 31")
	}
	w := make([]byte, 4*4)
	binary.LittleEndian.PutUint32(w[12:], uint32(0xffffffff))
	if err := checkConst("k", w, 3, vk.ComponentS32, 0); err != nil {
		t.Error(err)
	}
	if err := checkConst("k", w, 4, vk.ComponentS32, 0); err == nil || !strings.Contains(err.Error(), "element 3") {
		t.Errorf("checkConst s32 with element 3 = -1: %v", err)
	}
}

func TestSizesFor(t *testing.T) {
	caps := vk.Caps{MaxWorkgroupCount: [3]uint32{65535, 65535, 65535}, MaxStorageBufferRange: 1 << 32, MaxAllocationSize: 1 << 34, DeviceLocalBytes: 140 << 30}
	gpu := sizesFor(vk.DeviceInfo{Type: vk.DeviceDiscrete, Caps: caps})
	if gpu.copyBytes != 1<<30 || gpu.maxGroups != 65535 || gpu.fmaGroups < 1024 || gpu.cmIters > 2048 {
		t.Errorf("GPU sizes %+v: want a 1 GiB copy, ≤ 65535 groups, thousands of FMA groups, ≤ 2048 coopmat iterations", gpu)
	}
	caps.MaxStorageBufferRange = 128 << 20 // lavapipe's range: the copy shrinks to fit
	if s := sizesFor(vk.DeviceInfo{Type: vk.DeviceDiscrete, Caps: caps}); s.copyBytes != 128<<20 {
		t.Errorf("copy of %d bytes with a 128 MiB storage range", s.copyBytes)
	}
	caps.MaxStorageBufferRange, caps.DeviceLocalBytes = 1<<32, 1<<30 // a small GPU: a quarter of its memory
	if s := sizesFor(vk.DeviceInfo{Type: vk.DeviceIntegrated, Caps: caps}); s.copyBytes != 256<<20 {
		t.Errorf("copy of %d bytes with 1 GiB of device memory", s.copyBytes)
	}
	cpu := sizesFor(vk.DeviceInfo{Type: vk.DeviceCPU, Caps: caps})
	if cpu.copyBytes > 32<<20 || cpu.fmaGroups*uint32(cpu.fmaIters) > gpu.fmaGroups*uint32(gpu.fmaIters)/100 {
		t.Errorf("CPU sizes %+v are not small", cpu)
	}
}

// testKey is a key of a device that exists nowhere.
func testKey() peakKey {
	return peakKey{Schema: peakSchema, VendorID: 0x10de, DeviceID: 0x2335, DriverVersion: 0x8f0c0000, Driver: "NVIDIA",
		DriverInfo: "572.16", Name: "NVIDIA H200", API: "1.4.303", PipelineCacheUUID: "00112233445566778899aabbccddeeff", Kernels: peakKernelsHash()}
}

func testDoc(k peakKey) *peakDoc {
	return &peakDoc{Schema: peakSchema, Key: k, Device: k.Name, Measured: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Seconds: 4.5,
		Rows: []peakRow{
			{Kind: "fma", Scope: "invocation", Types: "f32", TFLOPs: 60, Validated: true},
			{Kind: "coopmat", Scope: "subgroup", A: "f16", B: "f16", C: "f32", Result: "f32", TFLOPs: 600, Validated: true},
			{Kind: "coopmat", Scope: "workgroup", A: "bf16", B: "bf16", C: "f32", Result: "f32", TFLOPs: 650, Validated: true},
			{Kind: "coopmat", Scope: "subgroup", A: "bf16", B: "bf16", C: "f32", Result: "f32", TFLOPs: 9000, Validated: false},
			{Kind: "coopmat", Scope: "subgroup", A: "f16", B: "f16", C: "f16", Result: "f16", TFLOPs: 1200, Validated: true},
			{Kind: "copy", Scope: "device", Types: "shader", GBs: 4000, Validated: true},
			{Kind: "copy", Scope: "device", Types: "vkCmdCopyBuffer", GBs: 3500, Validated: true},
		}}
}

func TestPeakCacheKeying(t *testing.T) {
	dir := t.TempDir()
	k := testKey()
	if k.Kernels == "" || len(k.Kernels) != 16 {
		t.Fatalf("kernels hash %q", k.Kernels)
	}
	f := k.file(dir)
	if filepath.Dir(f) != dir || !strings.HasPrefix(filepath.Base(f), "10de-2335-") || !strings.HasSuffix(f, ".json") {
		t.Errorf("cache file %s", f)
	}
	// Every field of the key names another file.
	v := reflect.ValueOf(&k).Elem()
	for i := 0; i < v.NumField(); i++ {
		k2 := k
		f2 := reflect.ValueOf(&k2).Elem().Field(i)
		switch f2.Kind() {
		case reflect.String:
			f2.SetString(f2.String() + "x")
		case reflect.Int:
			f2.SetInt(f2.Int() + 1)
		default:
			f2.SetUint(f2.Uint() + 1)
		}
		if k2.file(dir) == f {
			t.Errorf("changing %s keeps the file %s", v.Type().Field(i).Name, f)
		}
	}
	if k.file(dir) != testKey().file(dir) {
		t.Error("the same key names two files")
	}
}

func TestPeakCacheRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b") // created on write
	d := testDoc(testKey())
	d.Cached, d.File = true, "ignored"
	path, err := writePeakCache(dir, d)
	if err != nil {
		t.Fatal(err)
	}
	if path != d.Key.file(dir) {
		t.Errorf("written to %s, want %s", path, d.Key.file(dir))
	}
	if files := peakCacheFiles(dir); len(files) != 1 {
		t.Errorf("cache holds %v, want one file (no temporaries left)", files)
	}
	got, err := readPeakCache(dir, testKey())
	if err != nil {
		t.Fatal(err)
	}
	if !got.Cached || got.File != path {
		t.Errorf("read back: cached %v, file %q", got.Cached, got.File)
	}
	got.Cached, got.File, d.Cached, d.File = false, "", false, ""
	if !reflect.DeepEqual(got, d) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, d)
	}

	// Another driver version: a miss, though the file is still there.
	k := testKey()
	k.DriverVersion++
	if _, err := readPeakCache(dir, k); !errors.Is(err, errPeakMiss) {
		t.Errorf("another driver version: %v, want a miss", err)
	}
	// A file for another key at this key's name (renamed by hand): a miss.
	if err := os.Rename(path, k.file(dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := readPeakCache(dir, k); !errors.Is(err, errPeakMiss) || !strings.Contains(err.Error(), "another device") {
		t.Errorf("stored key differs: %v, want a miss", err)
	}
	// Corrupt files: errors that are not misses.
	for _, bad := range []string{"", "{", "null", `{"schema": 1, "key": 3}`, "\x00\x01"} {
		if err := os.WriteFile(k.file(dir), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if d, err := readPeakCache(dir, k); err == nil || errors.Is(err, errPeakMiss) {
			t.Errorf("corrupt file %q: %v, %v; want an error that is not a miss", bad, d, err)
		}
	}
	// A valid document without rows, or of an older schema, is not used.
	old := testDoc(k)
	old.Schema = peakSchema - 1
	b, _ := json.Marshal(old)
	os.WriteFile(k.file(dir), b, 0o644)
	if _, err := readPeakCache(dir, k); err == nil {
		t.Error("an older schema was read")
	}
}

func TestPeakCacheDir(t *testing.T) {
	t.Setenv(peakCacheEnv, "/from/env")
	if d, _ := peakCacheDir("/from/flag"); d != "/from/flag" {
		t.Errorf("flag: %s", d)
	}
	if d, _ := peakCacheDir(""); d != "/from/env" {
		t.Errorf("env: %s", d)
	}
	t.Setenv(peakCacheEnv, "")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	t.Setenv("HOME", "/home/u")
	if d, _ := peakCacheDir(""); d != "/xdg/vklora/peak" {
		t.Errorf("default with XDG_CACHE_HOME=/xdg: %s", d)
	}
}

func TestFracPeak(t *testing.T) {
	d := testDoc(testKey())
	for _, tc := range []struct {
		dt    dtype.DType
		coop  bool
		rate  float64
		basis string
	}{
		{dtype.F32, false, 60, "fma_f32"},
		{dtype.F32, true, 60, "fma_f32"}, // never asked: f32 has no coopmat row; fma anyway
		{dtype.F16, false, 60, "fma_f32"},
		{dtype.F16, true, 600, "coopmat_f16"},   // fp32 accumulation only: not the f16-accumulator 1200
		{dtype.BF16, true, 650, "coopmat_bf16"}, // the best validated bf16 row, either scope
	} {
		if r, b := d.rowPeak(tc.dt, tc.coop); r != tc.rate || b != tc.basis {
			t.Errorf("rowPeak(%s, coop %v) = %g %s, want %g %s", tc.dt, tc.coop, r, b, tc.rate, tc.basis)
		}
	}
	if got := d.rate("copy"); got != 4000 {
		t.Errorf("copy rate %g, want the best validated 4000", got)
	}
	// Without a bf16 coopmat row a coopmat bf16 row falls back to fma.
	d.Rows = d.Rows[:2]
	if r, b := d.rowPeak(dtype.BF16, true); r != 60 || b != "fma_f32" {
		t.Errorf("no bf16 row: %g %s, want the fma 60", r, b)
	}
	var none *peakDoc
	res := result{Validated: true, TFLOPs: 1}
	none.annotate(&res, nil) // -no-peak: nothing, no panic
	if res.FracPeak != 0 || res.PeakBasis != "" {
		t.Errorf("nil peak annotated %+v", res)
	}
}

// TestPeakCommand runs `lorabench peak` on the default device: the FMA and
// copy ceilings (and on devices with them, the cooperative-matrix ones) are
// measured and validated, cached, read back, and measured again with -fresh.
func TestPeakCommand(t *testing.T) {
	dev, _ := openEngine(t)
	sizes := sizesFor(dev.Info())
	dir := t.TempDir()
	code, out, _ := runCmd(t, "peak", "-cache", dir, "-json", "-reps", "3")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	var d peakDoc
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("bad JSON %q: %v", out, err)
	}
	if d.Cached || d.File == "" || d.Schema != peakSchema || d.Key.Driver == "" || d.Key.Kernels != peakKernelsHash() {
		t.Errorf("first run: cached %v, file %q, schema %d, key %+v", d.Cached, d.File, d.Schema, d.Key)
	}
	if files := peakCacheFiles(dir); len(files) != 1 || files[0] != d.File {
		t.Errorf("cache files %v, want [%s]", files, d.File)
	}
	kinds := map[string]int{}
	for _, r := range d.Rows {
		kinds[r.Kind]++
		if !r.Validated {
			t.Errorf("%s %s %s: not validated: %s", r.Kind, r.Shape, r.Types, r.Error)
			continue
		}
		if !(r.MsMin <= r.MsMedian && r.MsMedian <= r.MsMax) || r.MsMin <= 0 || r.Reps != 3 {
			t.Errorf("%s %s: times %g ≤ %g ≤ %g over %d reps", r.Kind, r.Types, r.MsMin, r.MsMedian, r.MsMax, r.Reps)
		}
		switch r.Kind {
		case "fma":
			if want := fmaFLOPs(r.Groups, r.Invocations, r.Iters); r.FLOPs != want || !(r.TFLOPs > 0) {
				t.Errorf("fma: %g FLOP (want %g), %g TFLOP/s", r.FLOPs, want, r.TFLOPs)
			}
			if got := r.FLOPs / (r.MsMedian * 1e-3) / 1e12; math.Abs(got-r.TFLOPs) > 1e-9*got {
				t.Errorf("fma: %g TFLOP/s, but FLOP/time is %g", r.TFLOPs, got)
			}
		case "copy":
			if r.Bytes != copyTraffic(sizes.copyBytes) || r.Shape != humanSize(sizes.copyBytes) || !(r.GBs > 0) {
				t.Errorf("copy %s: %g bytes, %g GB/s", r.Types, r.Bytes, r.GBs)
			}
		case "coopmat":
			if !(r.TFLOPs > 0) || r.Subgroup == 0 && r.Scope == "subgroup" {
				t.Errorf("coopmat %s %s: %g TFLOP/s, subgroup %d", r.Shape, r.Types, r.TFLOPs, r.Subgroup)
			}
		}
	}
	if kinds["fma"] != 1 || kinds["copy"] != 2 {
		t.Errorf("rows by kind %v, want 1 fma and 2 copy", kinds)
	}

	// The second run reads the cache; the table says so.
	code, out, _ = runCmd(t, "peak", "-cache", dir)
	if code != exitOK || !strings.Contains(out, "from the cache "+d.File) || !strings.Contains(out, "fma      invocation") {
		t.Errorf("cached table (exit %d) lacks the cache line or the fma row:\n%s", code, out)
	}
	code, out, _ = runCmd(t, "peak", "-cache", dir, "-json")
	var c peakDoc
	if code != exitOK || json.Unmarshal([]byte(out), &c) != nil || !c.Cached || !c.Measured.Equal(d.Measured) || len(c.Rows) != len(d.Rows) {
		t.Errorf("second run: exit %d, cached %v, measured %v (first %v)", code, c.Cached, c.Measured, d.Measured)
	}
	// A corrupt cache file is measured again and replaced, not fatal.
	if err := os.WriteFile(d.File, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t, "peak", "-cache", dir, "-json", "-reps", "1")
	var f peakDoc
	if code != exitOK || json.Unmarshal([]byte(out), &f) != nil || f.Cached || !strings.Contains(errs, "ignoring the cache file") {
		t.Errorf("corrupt cache: exit %d, cached %v, stderr %q", code, f.Cached, errs)
	}
	if _, err := readPeakCache(dir, f.Key); err != nil {
		t.Errorf("the corrupt file was not replaced: %v", err)
	}
	// -fresh measures although the cache is good.
	code, out, _ = runCmd(t, "peak", "-cache", dir, "-json", "-reps", "1", "-fresh")
	var g peakDoc
	if code != exitOK || json.Unmarshal([]byte(out), &g) != nil || g.Cached || !g.Measured.After(f.Measured) {
		t.Errorf("-fresh: exit %d, cached %v, measured %v after %v", code, g.Cached, g.Measured, f.Measured)
	}
	if code, _, stderr := runCmd(t, "peak", "-reps", "-1"); code != exitUsage || !strings.Contains(stderr, "-reps") {
		t.Errorf("peak -reps -1: exit %d, %q", code, stderr)
	}
}

// TestMatmulFracPeak: matmul rows divide by the cached peak of their
// device (a planted one here, so the expected fraction is known), and
// -no-peak leaves the fields out.
func TestMatmulFracPeak(t *testing.T) {
	needGPU(t)
	dev, eng := openEngine(t)
	dir := t.TempDir()
	doc := testDoc(peakKeyOf(dev.Info()))
	doc.Rows[0].TFLOPs = 1e-4 // fma: 100 GFLOP/s
	if _, err := writePeakCache(dir, doc); err != nil {
		t.Fatal(err)
	}
	t.Setenv(peakCacheEnv, dir)
	code, out, _ := runCmd(t, "matmul", "-sizes", "96", "-dtype", "f32,f16", "-reps", "2", "-warmup", "0", "-warmup-ms", "0", "-json")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	for _, l := range lines {
		var r result
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		wantRate, wantBasis := 1e-4, "fma_f32"
		if r.DType == "f16" && (eng.CoopMat(dtype.F16) || eng.CoopMat2(dtype.F16)) {
			wantRate, wantBasis = 600, "coopmat_f16"
		}
		if r.PeakBasis != wantBasis || math.Abs(float64(r.FracPeak)-r.TFLOPs/wantRate) > 1e-12 || !(r.FracPeak > 0) {
			t.Errorf("%s: frac_peak %g (%s), want %g/%g (%s)", r.DType, float64(r.FracPeak), r.PeakBasis, r.TFLOPs, wantRate, wantBasis)
		}
		if math.Abs(float64(r.FracBW)-r.GBs/4000) > 1e-12 {
			t.Errorf("%s: frac_bw %g, want %g/4000", r.DType, float64(r.FracBW), r.GBs)
		}
	}
	code, out, _ = runCmd(t, "matmul", "-sizes", "96", "-reps", "2", "-warmup", "0", "-warmup-ms", "0")
	if code != exitOK || !strings.Contains(out, "frac peak") {
		t.Errorf("table without a frac peak column (exit %d):\n%s", code, out)
	}
	code, out, _ = runCmd(t, "matmul", "-sizes", "96", "-reps", "2", "-warmup", "0", "-warmup-ms", "0", "-json", "-no-peak")
	if code != exitOK || strings.Contains(out, "frac_peak") || strings.Contains(out, "peak_basis") {
		t.Errorf("-no-peak: exit %d, %s", code, out)
	}
}

// TestPeakFailureIsContained: a measurement that fails while recording
// gives an unvalidated row with its error, and the next measurement on the
// same recorder still runs.
func TestPeakFailureIsContained(t *testing.T) {
	dev, _ := openEngine(t)
	rec, err := dev.NewRecorder()
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	m := &peakMeter{dev: dev, rec: rec, sizes: sizesFor(dev.Info()), reps: 1, first: true}
	k, err := peakKernel(dev, peakFMAKey, 256)
	if err != nil {
		t.Fatal(err)
	}
	bs, release, err := m.buffers(16 * 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	row := peakRow{Kind: "fma"}
	err = m.time(&row, kernelRun{base: 1,
		dispatch: func(r *vk.Recorder, _ uint32) error {
			r.Fill(bs[0].Whole(), 0)                                                  //nolint:errcheck
			return r.Dispatch(k, [3]uint32{0, 1, 1}, make([]byte, 16), bs[0].Whole()) // 0 workgroups: refused
		},
		check: func(uint32) (float64, error) { return 1, nil },
	})
	if err == nil {
		t.Fatal("a dispatch of 0 workgroups was timed")
	}
	row, err = m.settle(row, err)
	if err != nil || row.Validated || !strings.Contains(row.Error, "workgroup count") {
		t.Fatalf("settled: %v, row %+v", err, row)
	}
	fma, err := m.settle(m.fma())
	if err != nil || !fma.Validated || !(fma.TFLOPs > 0) {
		t.Errorf("the measurement after a failure: %v, %+v", err, fma)
	}
}

// TestPeakTiles: `peak -tiles` times the cache-resident reads, then the
// matmul's K loop stage by stage (the fragment loads alone among them) and
// the shared-memory-free form, each validated against its closed form; a
// tile the device cannot run gives a row with the reason; bad lists are
// usage errors. The table shows each tile's bound from its global loads.
func TestPeakTiles(t *testing.T) {
	for _, bad := range []string{"1,2", "0,64,32,32,32", "64,64,32,32,x", ";"} {
		if code, _, stderr := runCmd(t, "peak", "-tiles", bad); code != exitUsage || !strings.Contains(stderr, "-tiles") {
			t.Errorf("peak -tiles %q: exit %d, %q; want a usage error", bad, code, stderr)
		}
	}
	dev, _ := openEngine(t)
	s, ok := tileShape(dev.Caps())
	if !dev.Caps().CoopMat || !ok {
		code, _, stderr := runCmd(t, "peak", "-tiles", "64,64,32,32,32")
		if code != exitError || !strings.Contains(stderr, "no subgroup-scope") {
			t.Errorf("without cooperative matrices: exit %d, %q; want a runtime error saying why", code, stderr)
		}
		return
	}
	// Two by two subgroups of two by two fragments, and a grid no variant has.
	wm, wn, bk := 2*int(s.M), 2*int(s.N), max(2*int(s.K), 16)
	good := fmt.Sprintf("%d,%d,%d,%d,%d", 2*wm, 2*wn, bk, wm, wn)
	wide := fmt.Sprintf("%d,%d,%d,%d,%d", 8*int(s.M), 8*int(s.N), bk, 8*int(s.M), 8*int(s.N))
	code, out, stderr := runCmd(t, "peak", "-tiles", good+";"+wide, "-json", "-reps", "1")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc struct{ Rows []peakRow }
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("bad JSON %q: %v", out, err)
	}
	if len(doc.Rows) != 1+len(tileStages)+2 {
		t.Fatalf("%d rows, want the reads + %d stages + direct + the refused tile: %+v", len(doc.Rows), len(tileStages), doc.Rows)
	}
	if r := doc.Rows[0]; r.Kind != "read" || !r.Validated || !(r.GBs > 0) || r.Groups == 0 {
		t.Errorf("the cache-resident reads: %+v", r)
	}
	for i, r := range doc.Rows[1 : len(tileStages)+2] {
		if !r.Validated || !(r.TFLOPs > 0) || r.Subgroup == 0 || r.Groups == 0 {
			t.Errorf("row %d (%s): validated %v, %g TFLOP/s, subgroup %d, %d groups: %s", i, r.Types, r.Validated, r.TFLOPs, r.Subgroup, r.Groups, r.Error)
		}
		if loads := r.Types == tileStages[loadsOnlyStage]; loads != (r.GBs > 0) {
			t.Errorf("row %d (%s): %g GB/s; want a load rate on the loads-only stage alone", i, r.Types, r.GBs)
		}
	}
	if last := doc.Rows[len(doc.Rows)-1]; last.Validated || !strings.Contains(last.Error, "fragment grid 8×8") {
		t.Errorf("the 8×8-fragment tile: %+v; want a row saying no variant has its grid", last)
	}
	code, out, stderr = runCmd(t, "peak", "-tiles", good, "-reps", "1")
	if code != exitOK {
		t.Fatalf("table: exit %d: %s", code, stderr)
	}
	for _, want := range []string{cacheReads + ": ", "GB/s of fragment loads", "global loads alone, from cache"} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
}
