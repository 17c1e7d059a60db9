package optim

import (
	"math"

	"github.com/vklora/vklora/dtype"
)

// refAdamW is the CPU reference of the tests: torch's _single_tensor_adam
// (decoupled weight decay) after clip_grad_norm_, written as float32
// operations in torch's CPU order (see adamw.comp), one rounding per
// operation (explicit float32 conversions keep the Go compiler from fusing
// a product into a sum), the lerp as an exactly rounded fma. The clip norm
// is summed in the device's order (sumsq.comp: per-invocation sums, then a
// tree per workgroup, the same for the partials), so that on a driver with
// correctly rounded division and sqrt the device's bits are expected.
//
// The scalars come from stepScalars, which the tests check separately
// (TestStepScalars, and the torch vectors check all of it end to end).
type refAdamW struct {
	cfg    AdamWConfig
	step   int
	dts    []dtype.DType // parameter dtypes
	master [][]float32   // the f32 value of each parameter (its master copy)
	m, v   [][]float32
	norm   float32 // the last step's norm
}

func newRef(cfg AdamWConfig, dts []dtype.DType, init [][]float32) *refAdamW {
	if cfg.Schedule == nil {
		cfg.Schedule = Constant()
	}
	r := &refAdamW{cfg: cfg, dts: dts}
	for _, x := range init {
		r.master = append(r.master, append([]float32(nil), x...))
		r.m = append(r.m, make([]float32, len(x)))
		r.v = append(r.v, make([]float32, len(x)))
	}
	return r
}

// params returns each parameter as stored: the master rounded to its dtype.
func (r *refAdamW) params() [][]float32 {
	out := make([][]float32, len(r.master))
	for i, x := range r.master {
		out[i] = append([]float32(nil), x...)
		dtype.RoundSlice(r.dts[i], out[i])
	}
	return out
}

// Step applies one step with gradients grads (the values the device reads:
// already rounded to their storage dtype).
func (r *refAdamW) Step(grads [][]float32) {
	t := r.step + 1
	lr := r.cfg.LR * r.cfg.Schedule(r.step)
	pc := stepScalars(r.cfg, lr, t)
	coef := float32(1)
	if r.cfg.MaxGradNorm > 0 || r.cfg.TrackGradNorm {
		r.norm = deviceNorm(grads)
		if r.cfg.MaxGradNorm > 0 {
			den := r.norm + float32(1e-6)
			c := float32(float32(1/den) * float32(r.cfg.MaxGradNorm))
			if c > 1 {
				c = 1
			}
			coef = c
		}
	}
	small := math.Abs(float64(pc.W1)) < 0.5
	w1m := pc.W1 - 1
	for i := range r.master {
		p, m, v, g := r.master[i], r.m[i], r.v[i], grads[i]
		for j := range p {
			gi := g[j]
			if r.cfg.MaxGradNorm > 0 {
				gi = float32(gi * coef)
			}
			p1 := float32(p[j] * pc.Decay)
			dm := gi - m[j]
			var m1 float32
			if small {
				m1 = fma32(pc.W1, dm, m[j])
			} else {
				m1 = fma32(w1m, dm, gi)
			}
			v1 := float32(v[j] * pc.Beta2)
			cg := float32(pc.C2 * gi)
			cgg := float32(cg * gi)
			v2 := v1 + cgg
			s := float32(math.Sqrt(float64(v2))) // correctly rounded: 53 ≥ 2·24+2 bits
			d := s/pc.BC2Sqrt + pc.Eps
			u := float32(pc.NegStep * m1)
			p[j] = p1 + u/d
			m[j], v[j] = m1, v2
		}
	}
	r.step = t
}

// deviceNorm is sumsq.comp's f32 norm of the gradients, in its order.
func deviceNorm(grads [][]float32) float32 {
	var partials []float32
	for _, g := range grads {
		gx := normGroups(len(g))
		stride := gx * wg
		for w := 0; w < gx; w++ {
			sums := make([]float32, wg)
			for lid := 0; lid < wg; lid++ {
				var acc float32
				for i := w*wg + lid; i < len(g); i += stride {
					acc += float32(g[i] * g[i])
				}
				sums[lid] = acc
			}
			partials = append(partials, tree(sums))
		}
	}
	sums := make([]float32, wg)
	for lid := 0; lid < wg; lid++ {
		var acc float32
		for i := lid; i < len(partials); i += wg {
			acc += partials[i]
		}
		sums[lid] = acc
	}
	return float32(math.Sqrt(float64(tree(sums))))
}

// tree is the shared-memory reduction of sumsq.comp.
func tree(red []float32) float32 {
	for s := len(red) / 2; s > 0; s >>= 1 {
		for i := 0; i < s; i++ {
			red[i] += red[i+s]
		}
	}
	return red[0]
}

// fma32 is a·b + c rounded once to float32. The product is exact in
// float64 and the float64 sum is rounded once; a second rounding to float32
// could only go wrong when that sum lies exactly halfway between two
// float32s while the exact value does not, which the sum's error term
// resolves.
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b)
	s := p + float64(c)
	bv := s - p
	e := (p - (s - bv)) + (float64(c) - bv) // exact: s + e = p + c
	r := float32(s)
	if e == 0 || float64(r) == s {
		return r
	}
	// Halfway between r and its neighbour on the side of s?
	other := math.Nextafter32(r, float32(math.Copysign(math.Inf(1), s-float64(r))))
	if mid := (float64(r) + float64(other)) / 2; mid != s {
		return r
	}
	// s is a tie; the exact value lies on e's side of it.
	if (e > 0) == (float64(other) > float64(r)) {
		return other
	}
	return r
}
