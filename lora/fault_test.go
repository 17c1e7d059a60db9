package lora

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
)

// faultSentinel is the error each injected failure must wrap: the sentinel
// of the Vulkan result the injector returns (vk/fault.go).
var faultSentinel = map[vk.FaultKind]error{
	vk.FaultCreateBuffer:       vk.ErrOutOfDeviceMemory,
	vk.FaultAllocateMemory:     vk.ErrOutOfDeviceMemory,
	vk.FaultMapMemory:          vk.ErrMemoryMapFailed,
	vk.FaultCreateShaderModule: vk.ErrOutOfHostMemory,
	vk.FaultCreatePipeline:     vk.ErrOutOfHostMemory,
	vk.FaultQueueSubmit:        vk.ErrOutOfDeviceMemory,
}

// faultMLP is the small MLP of the fault tests as host values, so that the
// same layer can be built on several devices: each pipeline fault needs
// kernels that were never built, that is a fresh device.
type faultMLP struct {
	d          dtype.DType
	m, h, i, r int
	w, a, b    [3][]float64 // gate, up, down
	bias       [3][]float64
	mag        []float64 // DoRA magnitude of gate (ext only)
	loraBias   []float64 // lora_B bias of down (ext only)
	ext        bool      // + DoRA on gate, dropout on up, and dropout, a lora_B bias and a trainable bias on down
	x, gy      []float64
}

func newFaultMLP(f *fixture, ext bool) *faultMLP {
	const d, m, h, i, r = dtype.F32, 3, 8, 16, 2
	fm := &faultMLP{d: d, m: m, h: h, i: i, r: r, ext: ext}
	for p, dims := range [3][2]int{{i, h}, {i, h}, {h, i}} {
		out, in := dims[0], dims[1]
		fm.w[p] = f.Random(d, out*in, 0.3)
		fm.a[p] = f.Random(d, r*in, 0.3)
		fm.b[p] = f.Random(d, out*r, 0.5)
		fm.bias[p] = f.Random(d, out, 1)
	}
	if ext {
		fm.mag = f.Random(d, i, 1)
		fm.loraBias = f.Random(d, h, 1)
	}
	fm.x = f.Random(d, m*h, 1)
	fm.gy = f.Random(d, m*h, 1)
	return fm
}

// faultLayer is a faultMLP on one device: the tensors it uploaded, which
// release frees.
type faultLayer struct {
	l       *MLP
	x, gy   *vk.Tensor
	tensors []*vk.Tensor
}

func (fl *faultLayer) release() {
	for _, t := range fl.tensors {
		t.Release()
	}
}

func (fm *faultMLP) build(t *testing.T, dev *vk.Device) *faultLayer {
	t.Helper()
	eng, err := NewEngine(dev, Options{})
	require.NoError(t, err)
	fl := &faultLayer{}
	up := func(xs []float64, shape ...int) *vk.Tensor {
		ten, err := dev.TensorFrom(fm.d, ref.ToFloat32(xs), shape...)
		require.NoError(t, err)
		fl.tensors = append(fl.tensors, ten)
		return ten
	}
	var ps [3]*Projection
	for p, dims := range [3][2]int{{fm.i, fm.h}, {fm.i, fm.h}, {fm.h, fm.i}} {
		out, in := dims[0], dims[1]
		ps[p] = &Projection{W: Weight{Dense: up(fm.w[p], out, in)}, A: up(fm.a[p], fm.r, in), B: up(fm.b[p], out, fm.r),
			Scale: 1.5, Bias: up(fm.bias[p], out)}
	}
	if fm.ext {
		ps[0].Magnitude = up(fm.mag, fm.i)
		ps[1].Dropout = &Dropout{P: 0.25, Seed: 7, Offset: 1000}
		ps[2].LoRABias = up(fm.loraBias, fm.h)
		ps[2].BiasTrainable = true
		ps[2].Dropout = &Dropout{P: 0.125, Seed: 9, Offset: 2000}
	}
	fl.l = &MLP{Engine: eng, Gate: ps[0], Up: ps[1], Down: ps[2], Act: SwiGLU}
	fl.x, fl.gy = up(fm.x, fm.m, fm.h), up(fm.gy, fm.m, fm.h)
	return fl
}

// dropoutStart is where each step starts the dropout generators, so that
// steps are comparable.
var dropoutStart = map[string]uint64{"up": 1000, "down": 2000}

func (fl *faultLayer) dropouts() map[string]*Dropout {
	ds := map[string]*Dropout{}
	for name, p := range map[string]*Projection{"up": fl.l.Up, "down": fl.l.Down} {
		if p.Dropout != nil {
			ds[name] = p.Dropout
		}
	}
	return ds
}

// errForwardMovedDropout is a failed forward that moved a dropout
// generator: a retry would draw other masks.
var errForwardMovedDropout = errors.New("the failed forward moved a dropout generator")

// step runs one forward and backward on rec and submits it; it returns
// every result's bytes (Y, dX and each gradient), having released them.
func (fl *faultLayer) step(rec *vk.Recorder) ([][]byte, error) {
	for name, d := range fl.dropouts() {
		d.Offset = dropoutStart[name]
	}
	y, saved, err := fl.l.Forward(rec, fl.x)
	if err != nil {
		for name, d := range fl.dropouts() {
			if d.Offset != dropoutStart[name] {
				return nil, fmt.Errorf("%w (%s: %d, was %d): %w", errForwardMovedDropout, name, d.Offset, dropoutStart[name], err)
			}
		}
		return nil, err
	}
	return stepBytes(rec, fl.l, y, saved, fl.gy)
}

// freshStep is step on a recorder of its own, released after it.
func (fl *faultLayer) freshStep(dev *vk.Device) ([][]byte, error) {
	rec, err := dev.NewRecorder()
	if err != nil {
		return nil, err
	}
	defer rec.Release()
	return fl.step(rec)
}

// openFaultDevice opens a device of its own (cold kernels) with the test
// device's selection and no buffer cache, so that every buffer of a step
// is an allocation a fault can hit.
func openFaultDevice(t *testing.T) *vk.Device {
	t.Helper()
	dev, err := vk.Open(vk.Options{Select: os.Getenv("VKLORA_DEVICE"), Validation: true, BufferCacheBytes: -1})
	require.NoError(t, err)
	return dev
}

// usage is what a step must give back: the live objects and device bytes.
type usage struct {
	live  map[string]int
	bytes uint64
}

func usageOf(dev *vk.Device) usage {
	cur, _ := dev.MemoryStats()
	return usage{dev.Live(), cur}
}

// A failing buffer allocation, memory mapping, pipeline creation or queue
// submit, at every call of its kind over one MLP forward+backward step
// (its results read back included), returns an error that names the call
// and wraps its sentinel, gives back every object and byte the step made
// (the device's live objects and memory return to what they were), and
// leaves the engine usable: the next step on a new recorder, and on the
// recorder of the failed step after its Submit, is bit-identical to a
// step that never saw a fault. Pipeline faults run on a fresh device per
// call, so that every kernel of the step is built during it; the other
// kinds on a warm device. The layers: plain LoRA with biases, and one with
// DoRA, dropout, a lora_B bias and a trainable bias (the extension path).
func TestMLPStepSurvivesFaults(t *testing.T) {
	f := newFixture(t) // the shared device's cleanup checks the validation messages
	for _, ext := range []bool{false, true} {
		name := "plain"
		if ext {
			name = "ext"
		}
		t.Run(name, func(t *testing.T) {
			fm := newFaultMLP(f.in(t), ext)
			testFaults(t, fm)
		})
	}
}

func testFaults(t *testing.T, fm *faultMLP) {
	start := time.Now()
	// The reference: a cold step, counting its calls, then a warm one.
	dev := openFaultDevice(t)
	defer func() { require.NoError(t, dev.Release(), "the warm device") }()
	fl := fm.build(t, dev)
	defer fl.release()
	inj := dev.Faults()
	inj.Reset()
	want, err := fl.freshStep(dev)
	require.NoError(t, err)
	cold, warm := map[vk.FaultKind]int{}, map[vk.FaultKind]int{}
	for _, k := range vk.FaultKinds {
		cold[k] = inj.Calls(k)
	}
	inj.Reset()
	got, err := fl.freshStep(dev)
	require.NoError(t, err)
	require.Equal(t, want, got, "a warm step differs from the cold one")
	for _, k := range vk.FaultKinds {
		warm[k] = inj.Calls(k)
	}
	hostMapped := dev.Info().Type == vk.DeviceCPU || dev.Info().Type == vk.DeviceIntegrated
	report := ""
	for _, kind := range vk.FaultKinds {
		pipeline := kind == vk.FaultCreateShaderModule || kind == vk.FaultCreatePipeline
		n, onCold := warm[kind], pipeline || warm[kind] == 0
		if onCold {
			n = cold[kind]
		}
		if n == 0 {
			// Buffers of a discrete GPU are not mapped: only the staging
			// buffer is, made once, before the step.
			require.False(t, kind != vk.FaultMapMemory || hostMapped, "no %s call in a step", kind)
			t.Logf("%s: no call in a step on this device", kind)
			continue
		}
		for k := 1; k <= n; k++ {
			what := fmt.Sprintf("%s fails at call %d of %d", kind, k, n)
			if onCold {
				faultOnFreshDevice(t, fm, kind, k, want, what)
			} else {
				faultOnDevice(t, dev, fl, kind, k, want, what)
			}
		}
		report += fmt.Sprintf(" %s %d,", kind, n)
	}
	t.Logf("faults injected, each survived:%s in %v", report[:len(report)-1], time.Since(start).Round(time.Millisecond))
}

// requireFault checks the error of a step whose k-th call of kind failed.
func requireFault(t *testing.T, err error, kind vk.FaultKind, what string) {
	t.Helper()
	require.Error(t, err, what)
	require.NotErrorIs(t, err, errForwardMovedDropout, what)
	require.ErrorIs(t, err, faultSentinel[kind], what)
	require.Contains(t, err.Error(), kind.String(), what)
	var re *vk.ResultError
	require.True(t, errors.As(err, &re), "%s: %v is not a vk.ResultError", what, err)
}

// faultOnDevice injects the fault into a step on the warm device, twice:
// with a recorder made for the step (then a normal step on a new one), and
// on a recorder that the next, normal, step reuses after a Submit.
func faultOnDevice(t *testing.T, dev *vk.Device, fl *faultLayer, kind vk.FaultKind, k int, want [][]byte, what string) {
	t.Helper()
	inj := dev.Faults()
	before := usageOf(dev)
	inj.FailAt(kind, k)
	injected := inj.Injected(kind)
	_, err := fl.freshStep(dev)
	require.Equal(t, injected+1, inj.Injected(kind), "%s: not injected", what)
	requireFault(t, err, kind, what)
	require.Equal(t, before, usageOf(dev), "%s: live objects and device bytes after the failed step", what)
	got, err := fl.freshStep(dev)
	require.NoError(t, err, "%s: the next step", what)
	require.Equal(t, want, got, "%s: the next step differs", what)

	rec, err := dev.NewRecorder()
	require.NoError(t, err)
	defer rec.Release()
	before = usageOf(dev)
	inj.FailAt(kind, k)
	_, err = fl.step(rec)
	requireFault(t, err, kind, what+" (recorder reused)")
	_ = rec.Submit() // discards what the failed step recorded, or runs it
	require.Equal(t, before, usageOf(dev), "%s (recorder reused): live objects and device bytes after the failed step and Submit", what)
	got, err = fl.step(rec)
	require.NoError(t, err, "%s: the next step on the failed step's recorder", what)
	require.Equal(t, want, got, "%s: the next step on the failed step's recorder differs", what)
}

// faultOnFreshDevice builds the layer on a new device and injects the
// fault into its first step (kernels cold), then runs a normal step on it.
func faultOnFreshDevice(t *testing.T, fm *faultMLP, kind vk.FaultKind, k int, want [][]byte, what string) {
	t.Helper()
	dev := openFaultDevice(t)
	fl := fm.build(t, dev)
	inj := dev.Faults()
	inj.Reset()
	before := usageOf(dev)
	inj.FailAt(kind, k)
	_, err := fl.freshStep(dev)
	require.Equal(t, 1, inj.Injected(kind), "%s: not injected", what)
	requireFault(t, err, kind, what)
	require.Equal(t, before, usageOf(dev), "%s: live objects and device bytes after the failed step", what)
	got, err := fl.freshStep(dev)
	require.NoError(t, err, "%s: the next step", what)
	require.Equal(t, want, got, "%s: the next step differs", what)
	fl.release()
	require.NoError(t, dev.Release(), "%s: device release", what)
}

// envOOMTest opts in to TestOutOfDeviceMemoryThenStep, which fills the
// GPU's memory (other processes on it may fail meanwhile).
const envOOMTest = "VKLORA_OOM_TEST"

// Allocating 1 GiB tensors until the device has no memory left ends in an
// error that wraps vk.ErrOutOfDeviceMemory (never a panic, nor another
// error); once they are released the device holds what it held before,
// and an MLP step is bit-identical to the one before the exhaustion.
// Opt-in (VKLORA_OOM_TEST=1), for a GPU: skipped on CPU devices.
func TestOutOfDeviceMemoryThenStep(t *testing.T) {
	if os.Getenv(envOOMTest) != "1" {
		t.Skipf("fills the device's memory: set %s=1 to run it (on a GPU)", envOOMTest)
	}
	f := newFixture(t)
	dev := f.Dev
	if dev.Info().Type == vk.DeviceCPU {
		// Its device memory is the host's, allocated lazily: lavapipe
		// handed out 80 tensors of 128 MiB, 5 times its heap, untouched.
		t.Skipf("%s does not bound its device memory", dev.Info().Name)
	}
	fl := newFaultMLP(f, true).build(t, dev)
	defer fl.release()
	want, err := fl.freshStep(dev)
	require.NoError(t, err)
	before := usageOf(dev)
	c := dev.Caps()
	chunk := min(uint64(1)<<30, c.MaxStorageBufferRange, c.MaxAllocationSize) &^ 15
	// Past four times the device-local heaps something is wrong: the
	// driver over-commits, or the allocations are not device memory.
	most := int(4*c.DeviceLocalBytes/chunk) + 16
	var held []*vk.Tensor
	defer func() {
		for _, t := range held {
			t.Release()
		}
	}()
	start := time.Now()
	for len(held) < most {
		ten, err := dev.NewTensor(dtype.U8, int(chunk))
		if err != nil {
			require.ErrorIs(t, err, vk.ErrOutOfDeviceMemory, "after %d GiB", len(held))
			t.Logf("out of device memory after %d tensors of %d MiB (%.1f GiB; device-local heaps %.1f GiB) in %v: %v",
				len(held), chunk>>20, float64(uint64(len(held))*chunk)/(1<<30), float64(c.DeviceLocalBytes)/(1<<30),
				time.Since(start).Round(time.Millisecond), err)
			break
		}
		held = append(held, ten)
	}
	require.Less(t, len(held), most, "no ErrOutOfDeviceMemory after %d tensors of %d MiB", len(held), chunk>>20)
	for _, t := range held {
		t.Release()
	}
	held = nil
	require.Equal(t, before, usageOf(dev), "live objects and device bytes after the release")
	got, err := fl.freshStep(dev)
	require.NoError(t, err, "the step after running out of memory")
	require.Equal(t, want, got, "the step after running out of memory differs")
}
