package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/vklora/vklora/internal/cachedir"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/vk"
)

// The engine switches lorabench reads from the environment, once per
// engine, and hands to lora.NewEngine as Options: the library itself never
// reads the environment. README.md lists them.
const (
	envDisableCoopMat  = "VKLORA_DISABLE_COOPMAT"  // 1: scalar and narrow kernels only
	envDisableCoopMat2 = "VKLORA_DISABLE_COOPMAT2" // 1: no VK_NV_cooperative_matrix2
	envDisableNarrow   = "VKLORA_DISABLE_NARROW"   // 1: rank products on the tiled kernels
	envDisableSegments = "VKLORA_DISABLE_SEGMENTS" // 1: K segments (QKV's input gradient) as separate products
	envCoopMatTile     = "VKLORA_COOPMAT_TILE"     // "BM,BN,BK,WM,WN[,BUFS,PREFETCH]": the only subgroup-scope tile
	envCoopMat2Tile    = "VKLORA_COOPMAT2_TILE"    // "BM,BN,BK,WG[,UNROLL]": the only workgroup-scope tile
	envCoopMat2Unroll  = "VKLORA_COOPMAT2_UNROLL"  // N: the unroll of the workgroup-scope tiles the table unrolls
	envCoopMatShape    = "VKLORA_COOPMAT_SHAPE"    // "M,N,K": the only subgroup-scope matrix shape
)

// engineOptions reads the engine switches from getenv. A malformed value is
// an error naming the variable, never a silent default.
func engineOptions(getenv func(string) string) (lora.Options, error) {
	var o lora.Options
	for _, b := range []struct {
		name string
		dst  *bool
	}{{envDisableCoopMat, &o.DisableCoopMat}, {envDisableCoopMat2, &o.DisableCoopMat2}, {envDisableNarrow, &o.DisableNarrow}, {envDisableSegments, &o.DisableSegments}} {
		switch v := getenv(b.name); v {
		case "", "0":
		case "1":
			*b.dst = true
		default:
			return o, fmt.Errorf("%s=%q: want 1 or 0", b.name, v)
		}
	}
	if ct, err := coopTileFromEnv(getenv); err != nil {
		return o, err
	} else if ct != nil {
		o.CoopMatTile = ct
	}
	var sh [3]int
	if set, err := tileFromEnv(getenv, envCoopMatShape, &sh[0], &sh[1], &sh[2]); err != nil {
		return o, err
	} else if set {
		o.CoopMatShape = &sh
	}
	if c2, err := cm2TileFromEnv(getenv); err != nil {
		return o, err
	} else if c2 != nil {
		o.CoopMat2Tile = c2
	}
	if _, err := tileFromEnv(getenv, envCoopMat2Unroll, &o.CoopMat2Unroll); err != nil {
		return o, err
	}
	return o, nil
}

// coopTileFromEnv reads VKLORA_COOPMAT_TILE: "BM,BN,BK,WM,WN", or with
// two tuning fields more, BUFS (1: one tile buffer; 2: two where they
// fit, the default) and PREFETCH (1: the next tile's loads before the
// multiplies, the default; 0: after them).
func coopTileFromEnv(getenv func(string) string) (*lora.CoopTile, error) {
	v := getenv(envCoopMatTile)
	if v == "" {
		return nil, nil
	}
	var ct lora.CoopTile
	parts := strings.Split(v, ",")
	if len(parts) == 7 {
		bufs, pre := strings.TrimSpace(parts[5]), strings.TrimSpace(parts[6])
		if (bufs != "1" && bufs != "2") || (pre != "0" && pre != "1") {
			return nil, fmt.Errorf("%s=%q: BUFS (field 6) must be 1 or 2 and PREFETCH (field 7) 0 or 1", envCoopMatTile, v)
		}
		ct.OneBuf, ct.NoPrefetch = bufs == "1", pre == "0"
		parts = parts[:5]
	}
	short := func(string) string { return strings.Join(parts, ",") }
	if _, err := tileFromEnv(short, envCoopMatTile, &ct.BM, &ct.BN, &ct.BK, &ct.WM, &ct.WN); err != nil {
		return nil, fmt.Errorf("%w (or BM,BN,BK,WM,WN,BUFS,PREFETCH)", err)
	}
	return &ct, nil
}

// cm2TileFromEnv reads VKLORA_COOPMAT2_TILE: "BM,BN,BK,WG", or with a
// fifth field UNROLL, the K steps the kernel's in-range loop unrolls.
func cm2TileFromEnv(getenv func(string) string) (*lora.CM2Tile, error) {
	v := getenv(envCoopMat2Tile)
	if v == "" {
		return nil, nil
	}
	var t lora.CM2Tile
	fields := []*int{&t.BM, &t.BN, &t.BK, &t.WG}
	if strings.Count(v, ",") == 4 {
		fields = append(fields, &t.Unroll)
	}
	if _, err := tileFromEnv(getenv, envCoopMat2Tile, fields...); err != nil {
		return nil, fmt.Errorf("%w (or BM,BN,BK,WG,UNROLL)", err)
	}
	return &t, nil
}

// tileFromEnv reads "a,b,c,..." of len(fields) positive integers from the
// variable name into fields; set is false when it is empty.
func tileFromEnv(getenv func(string) string, name string, fields ...*int) (set bool, err error) {
	v := getenv(name)
	if v == "" {
		return false, nil
	}
	parts := strings.Split(v, ",")
	if len(parts) != len(fields) {
		return true, fmt.Errorf("%s=%q: want %d comma-separated positive integers", name, v, len(fields))
	}
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n <= 0 {
			return true, fmt.Errorf("%s=%q: field %d is not a positive integer", name, v, i+1)
		}
		*fields[i] = n
	}
	return true, nil
}

// newEngine makes the engine of one lorabench command with the
// environment's switches.
func newEngine(dev *vk.Device) (*lora.Engine, error) {
	opt, err := engineOptions(os.Getenv)
	if err != nil {
		return nil, err
	}
	return lora.NewEngine(dev, opt)
}

// The device switches lorabench reads: which device, and the validation
// layer (whose messages then fail the run).
const (
	envDevice     = "VKLORA_DEVICE"      // index or name substring; -device overrides it
	envValidation = "VKLORA_VALIDATION"  // 1: VK_LAYER_KHRONOS_validation, when installed
	envLogKernels = "VKLORA_LOG_KERNELS" // 1: a line on stderr per kernel built, with its compile time
)

// openDevice opens the device of -device sel, else $VKLORA_DEVICE, else
// the default order, with validation when $VKLORA_VALIDATION is 1.
func openDevice(sel string) (*vk.Device, error) { return openDeviceWith(sel, false) }

// openDeviceWith is openDevice that also keeps kernel statistics when
// stats (-stats).
func openDeviceWith(sel string, stats bool) (*vk.Device, error) {
	if sel == "" {
		sel = os.Getenv(envDevice)
	}
	return vk.Open(vk.Options{Select: sel, Validation: os.Getenv(envValidation) == "1", KernelStatistics: stats,
		KernelLog: kernelLog(), PipelineCacheDir: cachedir.Pipelines()})
}

// kernelLog is where the device logs its kernel builds: stderr with
// VKLORA_LOG_KERNELS=1, else nowhere.
func kernelLog() io.Writer {
	if os.Getenv(envLogKernels) == "1" {
		return os.Stderr
	}
	return nil
}
