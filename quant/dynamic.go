package quant

import (
	"math"
	"sort"
)

// DynamicMap returns bitsandbytes' create_dynamic_map(signed=True,
// max_exponent_bits=7, total_bits=8): 256 sorted float32 values, 127
// negative, 0 at index 127 and 1.0 at index 255. Checkpoints carry the map
// (nested_quant_map) and decoding must use the stored one; this is for
// quantizing.
func DynamicMap() [256]float32 { return dynamicMap }

var dynamicMap = createDynamicMap()

// createDynamicMap ports the script's torch code. For each exponent i the
// fractions are the midpoints of torch.linspace(0.1, 1, 2^i+1) in float32,
// scaled by float32(10^(i-6)). torch's CPU linspace evaluates
// start + step·idx (first half) and end − step·(steps−idx−1) (second half)
// in float32 and the compiler fuses each into an FMA; the unfused formula
// differs from the published maps in dozens of entries, the fused one in
// none (checked against every nested_quant_map in testdata).
func createDynamicMap() [256]float32 {
	data := make([]float32, 0, 256)
	for i := 0; i < 7; i++ {
		n := 1<<i + 1
		b := torchLinspace(0.1, 1, n)
		scale := float32(math.Pow(10, float64(i-6))) // torch casts the Python scalar to float32
		for j := 0; j+1 < n; j++ {
			mean := float32(float32(b[j]+b[j+1]) / 2)
			data = append(data, float32(scale*mean))
		}
		for j := 0; j+1 < n; j++ {
			mean := float32(float32(b[j]+b[j+1]) / 2)
			data = append(data, float32(-scale*mean))
		}
	}
	data = append(data, 0, 1)
	sort.Slice(data, func(i, j int) bool { return data[i] < data[j] })
	var m [256]float32
	copy(m[:], data)
	return m
}

// torchLinspace is torch.linspace(start, end, n, dtype=float32) on the CPU.
func torchLinspace(start, end float32, n int) []float32 {
	step := float32(end-start) / float32(n-1)
	out := make([]float32, n)
	for idx := range out {
		if idx < n/2 {
			out[idx] = fma32(step, float32(idx), start)
		} else {
			out[idx] = fma32(-step, float32(n-idx-1), end)
		}
	}
	return out
}

// fma32 is a·b+c rounded once to float32. For the small integer factors used
// here a·b+c is exact in float64 (≤ 31 significant bits), so the float64
// FMA followed by one rounding to float32 is the float32 FMA.
func fma32(a, b, c float32) float32 {
	return float32(math.FMA(float64(a), float64(b), float64(c)))
}

// dQuantize is bitsandbytes' dQuantize<STOCHASTIC=0> (csrc/kernels.cu) as the
// script ports it: a 7-step binary search over the sorted 256-entry map, then
// float32 midpoint tests against the bracketing entries. It returns a nearest
// entry; NaN maps to 0.
func dQuantize(x float32, code *[256]float32) uint8 {
	pivot, upperPivot, lowerPivot := 127, 255, 0
	lower, upper := float32(-1), float32(1)
	val := code[pivot]
	for i := 64; i > 0; i >>= 1 {
		if x > val {
			lowerPivot, lower = pivot, val
			pivot += i
		} else {
			upperPivot, upper = pivot, val
			pivot -= i
		}
		val = code[pivot]
	}
	if upperPivot == 255 {
		upper = code[255]
	}
	if lowerPivot == 0 {
		lower = code[0]
	}
	if x > val {
		if x > float32(float32(upper+val)*0.5) {
			return uint8(upperPivot)
		}
		return uint8(pivot)
	}
	if x < float32(float32(lower+val)*0.5) {
		return uint8(lowerPivot)
	}
	return uint8(pivot)
}

// quantizeBlockwise is bitsandbytes' 8-bit quantize_blockwise: per block of
// bs values, absmax = max|v| and code = dQuantize(v · f32(1/absmax)).
// A zero block gives 0·Inf = NaN and code 0, which still decodes to 0·0.
func quantizeBlockwise(v []float32, code *[256]float32, bs int) ([]uint8, []float32) {
	nb := ceilDiv(len(v), bs)
	q := make([]uint8, len(v))
	absmax := make([]float32, nb)
	for b := 0; b < nb; b++ {
		blk := v[b*bs : min((b+1)*bs, len(v))]
		absmax[b] = maxAbs(blk)
		r := float32(1) / absmax[b]
		for i, x := range blk {
			q[b*bs+i] = dQuantize(float32(x*r), code)
		}
	}
	return q, absmax
}

// maxAbs is max|x| over xs; inputs are checked finite by the callers.
func maxAbs(xs []float32) float32 {
	var m float32
	for _, x := range xs {
		if a := float32(math.Abs(float64(x))); a > m {
			m = a
		}
	}
	return m
}
