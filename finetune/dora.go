package finetune

import (
	"math"
	"slices"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/peft"
	"github.com/vklora/vklora/vk"
)

// initDoRA sets the magnitude of the fresh DoRA module at path p, uploaded
// in m.Modules, to PEFT's starting value (DoraLinearLayer.update_layer):
// the row norms of the base weight with the module's initial low-rank term,
//
//	m_o = ‖W_o + s·(B·A)_o‖ = √(‖W_o‖² + 2s·Σ_k B_ok·(A·Wᵀ)_ko + s²·Σ_kl B_ok·(A·Aᵀ)_kl·B_ol)
//
// which is ‖W_o‖ when lora_B is zero (init_lora_weights true or
// "gaussian"). The terms with W, which lives on the device (an NF4 weight
// decoded as PEFT's dequantize_module_weight does, in the kernel), are the
// DoRA forward's own: ‖W_o‖² from the row-squares kernel and A·Wᵀ from one
// f32-accumulated matmul; the [out]-sized rest is summed on the host in
// float64 from the module's A and B, and m is rounded to the module's
// dtype, both on the host and on the device.
func (m *Model) initDoRA(eng *lora.Engine, w lora.Weight, p string) error {
	dm := m.Modules[p]
	mod := dm.Module
	out, r := mod.Out(), mod.R
	dev := eng.Device()
	rec, err := dev.NewRecorder()
	if err != nil {
		return err
	}
	defer rec.Release()
	// The results outlive Submit, which frees what rec holds.
	wsq, err := dev.NewTensor(dtype.F32, out)
	if err != nil {
		return err
	}
	defer wsq.Release()
	wm := lora.Dense(w.Dense)
	if w.NF4 != nil {
		wm = lora.NF4(w.NF4)
		err = eng.Kernels().RowSquaresNF4(rec, wsq, w.NF4) // decoded in the kernel
	} else {
		err = eng.Kernels().RowSquares(rec, wsq, w.Dense)
	}
	if err != nil {
		return err
	}
	zeroB := !slices.ContainsFunc(mod.B.Data, func(x float32) bool { return x != 0 })
	var aw *vk.Tensor
	if !zeroB {
		if aw, err = dev.NewTensor(dtype.F32, r, out); err != nil {
			return err
		}
		defer aw.Release()
		if err := eng.MatmulTo(rec, aw, lora.Dense(dm.A), wm.T(), 1, 0); err != nil {
			return err
		}
	}
	if err := rec.Submit(); err != nil {
		return err
	}
	sq, err := wsq.Float32()
	if err != nil {
		return err
	}
	n2 := make([]float64, out)
	for o, v := range sq {
		n2[o] = float64(v)
	}
	if !zeroB {
		awh, err := aw.Float32()
		if err != nil {
			return err
		}
		addLoRANorm(n2, awh, mod)
	}
	mag := mod.Magnitude
	data := make([]float32, out)
	for o, v := range n2 {
		data[o] = dtype.Round(mag.DType, float32(math.Sqrt(max(v, 0))))
	}
	if err := dm.Magnitude.Upload(data); err != nil {
		return err
	}
	c := *mod
	c.Magnitude = &peft.Tensor{Shape: []int{out}, DType: mag.DType, Data: data}
	dm.Module = &c
	m.Adapter.Modules[p] = &c
	return nil
}

// addLoRANorm adds the low-rank terms of ‖W_o + s·(B·A)_o‖² to n2 (holding
// ‖W_o‖²), from aw = A·Wᵀ (f32 [r, out]) and the module's host A and B, in
// float64.
func addLoRANorm(n2 []float64, aw []float32, mod *peft.Module) {
	out, in, r, s := mod.Out(), mod.In(), mod.R, mod.Scale
	a, b := mod.A.Data, mod.B.Data
	aa := make([]float64, r*r) // A·Aᵀ
	for k := range r {
		for l := range r {
			v := 0.0
			for j := range in {
				v += float64(a[k*in+j]) * float64(a[l*in+j])
			}
			aa[k*r+l] = v
		}
	}
	for o := range out {
		cross, quad := 0.0, 0.0
		for k := range r {
			bk := float64(b[o*r+k])
			cross += bk * float64(aw[k*out+o])
			row := 0.0
			for l := range r {
				row += aa[k*r+l] * float64(b[o*r+l])
			}
			quad += bk * row
		}
		n2[o] += 2*s*cross + s*s*quad
	}
}
