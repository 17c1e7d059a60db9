package peft

import (
	"fmt"
	"maps"
	"slices"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/vk"
)

// DeviceModule is a Module's tensors on a device, all of one dtype (the
// layers need the adapter in the base weight's dtype). It owns them:
// Release frees them, and the LoRALinear it builds only borrows them.
type DeviceModule struct {
	// Module is the host module it was uploaded from: path, r, alpha and
	// flags, and the dtypes Download rounds back to.
	Module *Module
	A, B   *vk.Tensor
	// LoRABias, Magnitude and BaseBias are nil when the module has none.
	LoRABias, Magnitude, BaseBias *vk.Tensor
}

// Upload copies m's tensors to dev as dtype d (rounding to nearest even
// when d is narrower than a tensor's stored dtype). The caller releases
// the result.
func (m *Module) Upload(dev *vk.Device, d dtype.DType) (*DeviceModule, error) {
	if m == nil {
		return nil, fmt.Errorf("peft: Upload: module is nil: %w", lora.ErrBadInput)
	}
	dm, err := m.upload(dev, d)
	if err != nil {
		return nil, fmt.Errorf("peft: Upload %s: %w", m.Path, err)
	}
	return dm, nil
}

func (m *Module) upload(dev *vk.Device, d dtype.DType) (*DeviceModule, error) {
	switch {
	case dev == nil:
		return nil, fmt.Errorf("device is nil: %w", lora.ErrBadInput)
	case !d.IsFloat():
		return nil, fmt.Errorf("dtype %v is not f32, f16 or bf16: %w", d, lora.ErrBadInput)
	case m.A == nil || m.B == nil:
		return nil, fmt.Errorf("lora_A and lora_B must both be set: %w", lora.ErrBadInput)
	}
	dm := &DeviceModule{Module: m}
	for _, x := range []struct {
		name string
		src  *Tensor
		dst  **vk.Tensor
	}{{"lora_A", m.A, &dm.A}, {"lora_B", m.B, &dm.B}, {"lora_B bias", m.LoRABias, &dm.LoRABias},
		{"magnitude", m.Magnitude, &dm.Magnitude}, {"base bias", m.BaseBias, &dm.BaseBias}} {
		if x.src == nil {
			continue
		}
		if err := x.src.check(); err != nil {
			dm.Release()
			return nil, fmt.Errorf("%s: %w", x.name, err)
		}
		t, err := dev.TensorFrom(d, x.src.Data, x.src.Shape...)
		if err != nil {
			dm.Release()
			return nil, fmt.Errorf("%s %v: %w", x.name, x.src.Shape, err)
		}
		*x.dst = t
	}
	return dm, nil
}

// Adapter is the module's layer without its base: the lora.LoRALinear a
// base-checkpoint loader completes (package hf's Adapters callback leaves
// Base to the loader, and the bias too when Bias is nil). Bias is the
// trained base bias the adapter saved (bias "all" or "lora_only"), which
// replaces the base layer's as PEFT's load overwrites it, or nil;
// BiasTrainable is set with it. R, Alpha, UseRSLoRA (so the scale is
// PEFT's), Dropout, the lora_B bias and the DoRA magnitude come from the
// module. The layer borrows dm's tensors.
func (dm *DeviceModule) Adapter() (*lora.LoRALinear, error) {
	if dm == nil || dm.Module == nil || dm.A.Released() || dm.B.Released() {
		return nil, fmt.Errorf("peft: device module is nil or released: %w", lora.ErrBadInput)
	}
	m := dm.Module
	return &lora.LoRALinear{
		Bias: dm.BaseBias, BiasTrainable: m.BiasTrainable && dm.BaseBias != nil,
		A: dm.A, B: dm.B, LoRABias: dm.LoRABias, Magnitude: dm.Magnitude,
		Dropout: m.Dropout, Alpha: m.Alpha, R: m.R, UseRSLoRA: m.UseRSLoRA,
	}, nil
}

// LoRALinear is Adapter completed with the frozen base weight [out, in]
// (transpose a fan_in_fan_out Conv1D weight, stored [in, out], first) and
// the base layer's bias [out] or nil, which the adapter's trained bias
// overrides. BiasTrainable is set when the config trains biases and the
// layer has one. The layer borrows dm's tensors, base and baseBias:
// releasing them stays the caller's business.
func (dm *DeviceModule) LoRALinear(base lora.Weight, baseBias *vk.Tensor) (*lora.LoRALinear, error) {
	l, err := dm.Adapter()
	if err != nil {
		return nil, err
	}
	m := dm.Module
	out, in, d, err := weightDims(base)
	if err != nil {
		return nil, fmt.Errorf("peft: LoRALinear %s: base weight %w", m.Path, err)
	}
	if out != dm.B.Dim(0) || in != dm.A.Dim(1) {
		hint := ""
		if m.FanInFanOut {
			hint = " (fan_in_fan_out: transpose the stored [in, out] weight)"
		}
		return nil, fmt.Errorf("peft: LoRALinear %s: base weight [%d %d] is not [out=%d, in=%d] for lora_A %s and lora_B %s%s: %w",
			m.Path, out, in, dm.B.Dim(0), dm.A.Dim(1), dm.A, dm.B, hint, lora.ErrBadInput)
	}
	if dm.A.DType() != d {
		return nil, fmt.Errorf("peft: LoRALinear %s: adapter uploaded as %s, base weight is %s (upload in the base dtype): %w",
			m.Path, dm.A.DType(), d, lora.ErrBadInput)
	}
	l.Base = base
	if l.Bias == nil {
		l.Bias = baseBias
	}
	l.BiasTrainable = m.BiasTrainable && l.Bias != nil
	return l, nil
}

// weightDims is lora.Weight's [out, in] and dtype, checked.
func weightDims(w lora.Weight) (out, in int, d dtype.DType, err error) {
	switch {
	case w.Dense != nil && w.NF4 != nil:
		return 0, 0, 0, fmt.Errorf("has both a dense and an NF4 tensor: %w", lora.ErrBadInput)
	case w.NF4 != nil:
		if w.NF4.Released() {
			return 0, 0, 0, fmt.Errorf("is released: %w", lora.ErrBadInput)
		}
		return w.NF4.Out, w.NF4.In, w.NF4.DType, nil
	case w.Dense.Released():
		return 0, 0, 0, fmt.Errorf("is nil or released: %w", lora.ErrBadInput)
	case w.Dense.Rank() != 2:
		return 0, 0, 0, fmt.Errorf("%s is not 2-D [out, in]: %w", w.Dense, lora.ErrBadInput)
	}
	return w.Dense.Dim(0), w.Dense.Dim(1), w.Dense.DType(), nil
}

// Download reads the (trained) tensors back into a new Module with dm's
// path, r, alpha and flags, each tensor rounded to the dtype it had in the
// host module, so Save writes the dtypes the adapter came with.
func (dm *DeviceModule) Download() (*Module, error) {
	if dm == nil || dm.Module == nil {
		return nil, fmt.Errorf("peft: Download: device module is nil: %w", lora.ErrBadInput)
	}
	m := *dm.Module
	for _, x := range []struct {
		name string
		src  *vk.Tensor
		dst  **Tensor
	}{{"lora_A", dm.A, &m.A}, {"lora_B", dm.B, &m.B}, {"lora_B bias", dm.LoRABias, &m.LoRABias},
		{"magnitude", dm.Magnitude, &m.Magnitude}, {"base bias", dm.BaseBias, &m.BaseBias}} {
		host := *x.dst
		if x.src == nil || host == nil {
			if (x.src == nil) != (host == nil) {
				return nil, fmt.Errorf("peft: Download %s: %s is on only one of host and device: %w", m.Path, x.name, lora.ErrBadInput)
			}
			continue
		}
		if !slices.Equal(x.src.Shape(), host.Shape) {
			return nil, fmt.Errorf("peft: Download %s: %s on the device is %s, the module's is %v: %w", m.Path, x.name, x.src, host.Shape, lora.ErrBadInput)
		}
		data, err := x.src.Float32()
		if err != nil {
			return nil, fmt.Errorf("peft: Download %s: %s: %w", m.Path, x.name, err)
		}
		roundExact(host.DType, data)
		*x.dst = &Tensor{Shape: slices.Clone(host.Shape), DType: host.DType, Data: data}
	}
	return &m, nil
}

// Release frees the module's device tensors; safe to call twice and on nil.
func (dm *DeviceModule) Release() {
	if dm == nil {
		return
	}
	for _, t := range []*vk.Tensor{dm.A, dm.B, dm.LoRABias, dm.Magnitude, dm.BaseBias} {
		t.Release()
	}
}

// DeviceModules is an adapter's modules on a device, by module path.
type DeviceModules map[string]*DeviceModule

// Upload copies every module of a to dev as dtype d (see Module.Upload);
// on an error nothing stays allocated. The caller releases the result.
func (a *Adapter) Upload(dev *vk.Device, d dtype.DType) (DeviceModules, error) {
	ms := DeviceModules{}
	for _, p := range a.Paths() {
		dm, err := a.Modules[p].Upload(dev, d)
		if err != nil {
			ms.Release()
			return nil, err
		}
		ms[p] = dm
	}
	return ms, nil
}

// Release frees every module's tensors; safe to call twice.
func (ms DeviceModules) Release() {
	for _, dm := range ms {
		dm.Release()
	}
}

// Adapter returns the base-less layer (DeviceModule.Adapter) of the module
// at path, or nil and no error when the adapter has none there: what a
// base-checkpoint loader asks for each projection, e.g. for package hf
//
//	func(i int, m hf.Module) (*lora.LoRALinear, error) { return ms.Adapter(hf.Prefix(i, m)) }
func (ms DeviceModules) Adapter(path string) (*lora.LoRALinear, error) {
	dm, ok := ms[path]
	if !ok {
		return nil, nil
	}
	return dm.Adapter()
}

// Download returns a copy of a whose modules in ms are replaced by their
// downloaded (trained) tensors, ready for Save; a itself is not changed.
func (ms DeviceModules) Download(a *Adapter) (*Adapter, error) {
	out := &Adapter{Config: a.Config.Clone(), Modules: map[string]*Module{}}
	if a.OtherBiases != nil {
		out.OtherBiases = map[string]*Tensor{}
		for p, t := range a.OtherBiases {
			out.OtherBiases[p] = t.clone()
		}
	}
	for _, p := range slices.Sorted(maps.Keys(a.Modules)) {
		m := a.Modules[p]
		dm, ok := ms[p]
		if !ok {
			c := *m
			c.A, c.B, c.LoRABias, c.Magnitude, c.BaseBias = m.A.clone(), m.B.clone(), m.LoRABias.clone(), m.Magnitude.clone(), m.BaseBias.clone()
			out.Modules[p] = &c
			continue
		}
		d, err := dm.Download()
		if err != nil {
			return nil, err
		}
		out.Modules[p] = d
	}
	return out, nil
}
