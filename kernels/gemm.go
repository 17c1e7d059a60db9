package kernels

import (
	"fmt"
	"math"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
)

// Gemm is one product C = Alpha·op(A)·op(B) + Alpha2·op(A2)·op(B2) +
// Beta·C. The second product (the fused LoRA term) is optional (A2 zero);
// A2 must be f32 and B2 of the layer dtype. Only B may be NF4.
//
// Segs are optional further K segments, each adding Alpha·Seg.A·Seg.B
// (+ Seg.Alpha2·Seg.A2·Seg.B2) into the same C: a sum of products such as
// Σ_p G_p·W_p, which the workgroup-scope kernel runs as one deep product
// (segments.go) and other kernels as one product after another.
type Gemm struct {
	C                   *vk.Tensor
	A, B, A2, B2        Mat
	Alpha, Beta, Alpha2 float32
	Segs                []Seg
}

// MatmulTo computes C = alpha·op(A)·op(B) + beta·C with fp32 accumulation,
// where op(A) is [M, K], op(B) is [K, N] and C is [M, N]. Operands are dense
// f32/f16/bf16 tensors (B may be NF4); the dtypes must be one layer dtype D
// or f32. beta = 0 never reads C, so C may hold garbage.
func (e *Dispatcher) MatmulTo(rec *vk.Recorder, c *vk.Tensor, a, b Mat, alpha, beta float32) error {
	return e.Gemm(rec, Gemm{C: c, A: a, B: b, Alpha: alpha, Beta: beta})
}

func finite32(x float32) bool { return !math.IsNaN(float64(x)) && !math.IsInf(float64(x), 0) }

// layerDType finds D: the one non-f32 dtype among the operands, or f32.
func layerDType(ms ...Mat) (dtype.DType, error) {
	d := dtype.F32
	for _, m := range ms {
		if m.IsZero() {
			continue
		}
		if t := m.DType(); t != dtype.F32 {
			if d != dtype.F32 && t != d {
				return 0, fmt.Errorf("mixed dtypes %s and %s (operands must share one dtype or be f32): %w", d, t, ErrBadInput)
			}
			d = t
		}
	}
	return d, nil
}

// key is the matmul variant for the operand types, on kernel kern.
func (g *Gemm) key(kern shaders.MatmulKernel) (shaders.MatmulKey, error) {
	d, err := layerDType(g.A, g.B, Dense(g.C), g.B2)
	if err != nil {
		return shaders.MatmulKey{}, err
	}
	if g.A.nf4 != nil || g.A2.nf4 != nil || g.B2.nf4 != nil {
		return shaders.MatmulKey{}, fmt.Errorf("an NF4 weight may only be the B operand: %w", ErrBadInput)
	}
	if !g.A2.IsZero() && g.A2.DType() != dtype.F32 {
		return shaders.MatmulKey{}, fmt.Errorf("the fused term's A2 %s must be f32: %w", g.A2, ErrBadInput)
	}
	if !g.B2.IsZero() && g.B2.DType() != d {
		return shaders.MatmulKey{}, fmt.Errorf("the fused term's B2 %s must have the layer dtype %s: %w", g.B2, d, ErrBadInput)
	}
	half := d != dtype.F32
	return shaders.MatmulKey{Kernel: kern, D: d,
		A32: half && g.A.DType() == dtype.F32,
		B32: half && g.B.nf4 == nil && g.B.DType() == dtype.F32,
		NF4: g.B.nf4 != nil,
		C32: half && g.C.DType() == dtype.F32}, nil
}

func (g *Gemm) validate() (m, n, k, k2 int, err error) {
	if err := Dense(g.C).check("output C"); err != nil {
		return 0, 0, 0, 0, err
	}
	if err := g.A.check("A"); err != nil {
		return 0, 0, 0, 0, err
	}
	if err := g.B.check("B"); err != nil {
		return 0, 0, 0, 0, err
	}
	m, k = g.A.Dims()
	kb, n := g.B.Dims()
	cm, cn := g.C.Dim(0), g.C.Dim(1)
	if kb != k {
		return 0, 0, 0, 0, fmt.Errorf("A %s is [%d,%d] but B %s is [%d,%d]: inner dimensions differ: %w", g.A, m, k, g.B, kb, n, ErrBadInput)
	}
	if cm != m || cn != n {
		return 0, 0, 0, 0, fmt.Errorf("output C %s, want [%d,%d] for A %s · B %s: %w", g.C, m, n, g.A, g.B, ErrBadInput)
	}
	if g.A2.IsZero() != g.B2.IsZero() {
		return 0, 0, 0, 0, fmt.Errorf("fused term needs both A2 and B2 (A2 %s, B2 %s): %w", g.A2, g.B2, ErrBadInput)
	}
	if !g.A2.IsZero() {
		if err := g.A2.check("A2"); err != nil {
			return 0, 0, 0, 0, err
		}
		if err := g.B2.check("B2"); err != nil {
			return 0, 0, 0, 0, err
		}
		m2, j := g.A2.Dims()
		j2, n2 := g.B2.Dims()
		if m2 != m || n2 != n || j != j2 {
			return 0, 0, 0, 0, fmt.Errorf("fused term A2 %s · B2 %s must be [%d,r]·[r,%d]: %w", g.A2, g.B2, m, n, ErrBadInput)
		}
		k2 = j
	}
	// Workgroups read input tiles while others write C: an output that
	// shares memory with an input would give a silently wrong result.
	for _, in := range []struct {
		name string
		m    Mat
	}{{"A", g.A}, {"B", g.B}, {"A2", g.A2}, {"B2", g.B2}} {
		if !in.m.IsZero() && in.m.overlaps(g.C) {
			return 0, 0, 0, 0, fmt.Errorf("output C %s shares memory with %s %s (write to a separate tensor): %w", g.C, in.name, in.m, ErrBadInput)
		}
	}
	for _, x := range []float32{g.Alpha, g.Beta, g.Alpha2} {
		if !finite32(x) {
			return 0, 0, 0, 0, fmt.Errorf("scale %v is not finite: %w", x, ErrBadInput)
		}
	}
	return m, n, k, k2, nil
}
