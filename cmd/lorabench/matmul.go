package main

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
)

// maxRefRows bounds the rows of C checked against the float64 reference, so
// validating 4096³ costs 64·N·K multiply-adds on the CPU, not M·N·K.
const maxRefRows = 64

// matmulForms maps -form to how A and B are stored: nt is X·Wᵀ (A [M,K],
// B stored [N,K]), nn is G·W (A [M,K], B [K,N]), tn is Gᵀ·X (A stored [K,M],
// B [K,N]).
var matmulForms = map[string][2]bool{"nt": {false, true}, "nn": {false, false}, "tn": {true, false}}

const matmulSynopsis = "[-m M -n N -k K | -sizes S,...] [-dtype D,...] [-form nt|nn|tn] [-weight dense,nf4 [-blocksize B] [-double-quant=BOOL]] [-reps N] [-warmup N] [-warmup-ms MS] [-seed S] [-device SEL] [-json] [-plot FILE.png|FILE.svg [-plot-metric tflops|ms|peak]] [-profile] [-stats] [-no-peak] [-sweep NAME=V1;V2;...]"

func cmdMatmul(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("matmul", matmulSynopsis, stderr)
	m := fs.Int("m", 1024, "rows of C and op(A), at most 2147483647 (a shape the device cannot hold is skipped, with a hint)")
	n := fs.Int("n", 1024, "columns of C and op(B), at most 2147483647")
	k := fs.Int("k", 1024, "inner dimension, at most 2147483647")
	sizes := fs.String("sizes", "", "comma-separated cube sizes (M=N=K), instead of -m/-n/-k")
	dts := fs.String("dtype", "f32", "storage dtype of A, B and C: f32, f16 or bf16 (comma-separated for several)")
	form := fs.String("form", "nt", "nt: X·Wᵀ (B stored [N,K]); nn: G·W; tn: Gᵀ·X (A stored [K,M])")
	wf := addWeightFlags(fs)
	o := addRunFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	if _, ok := matmulForms[*form]; !ok {
		return usagef("-form %q: want nt, nn or tn", *form)
	}
	var dtypes []dtype.DType
	for _, s := range strings.Split(*dts, ",") {
		d, err := dtype.Parse(strings.TrimSpace(s))
		if err != nil || !d.IsFloat() {
			return usagef("-dtype %q: want f32, f16 or bf16", s)
		}
		dtypes = append(dtypes, d)
	}
	set := setFlags(fs)
	wfs, err := wf.parse(set)
	if err != nil {
		return err
	}
	var shapes [][3]int
	if set["sizes"] {
		if set["m"] || set["n"] || set["k"] {
			return usagef("-sizes and -m/-n/-k are alternatives: give one")
		}
		for _, s := range strings.Split(*sizes, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || v < 1 {
				return usagef("-sizes: %q is not a size ≥ 1", s)
			}
			if err := checkDims(dimFlag{"sizes", v}); err != nil {
				return err
			}
			shapes = append(shapes, [3]int{v, v, v})
		}
	} else {
		if err := checkDims(dimFlag{"m", *m}, dimFlag{"n", *n}, dimFlag{"k", *k}); err != nil {
			return err
		}
		shapes = [][3]int{{*m, *n, *k}}
	}
	var cases []benchCase
	for _, s := range shapes {
		for _, d := range dtypes {
			for _, w := range wfs {
				c := matmulCase(s[0], s[1], s[2], d, *form, w)
				// Hints for a case that does not fit: a smaller -sizes, or
				// a smaller -m, -n or -k (the one that helps first).
				if set["sizes"] {
					c.Smaller = []resize{{"-sizes", s[0], func(v int) benchCase { return matmulCase(v, v, v, d, *form, w) }, nil}}
				} else {
					c.Smaller = []resize{
						{"-m", s[0], func(v int) benchCase { return matmulCase(v, s[1], s[2], d, *form, w) }, nil},
						{"-n", s[1], func(v int) benchCase { return matmulCase(s[0], v, s[2], d, *form, w) }, nil},
						{"-k", s[2], func(v int) benchCase { return matmulCase(s[0], s[1], v, d, *form, w) }, nil},
						// All three at most v.
						{"", max(s[0], s[1], s[2]), func(v int) benchCase {
							return matmulCase(min(s[0], v), min(s[1], v), min(s[2], v), d, *form, w)
						}, func(v int) string { return fmt.Sprintf("-m %d -n %d -k %d", min(s[0], v), min(s[1], v), min(s[2], v)) }},
					}
				}
				c.Smaller = append(c.Smaller, nf4Resize(c, func() benchCase { return matmulCase(s[0], s[1], s[2], d, *form, nf4Default) })...)
				cases = append(cases, c)
			}
		}
	}
	return runSelected(cases, o, stdout, stderr)
}

// matmulCase is C[M,N] = op(A)[M,K]·op(B)[K,N] with every operand in d, or
// with B an NF4 weight decoded to d when w says so. FLOPs 2·M·N·K; bytes
// (M·K + M·N)·sizeof(d) plus B's bytes (K·N·sizeof(d) dense, see
// weightBytes for NF4).
func matmulCase(m, n, k int, d dtype.DType, form string, w weightFormat) benchCase {
	return benchCase{
		Op: "matmul", Form: form, DType: d, M: m, N: n, K: k, Weight: w,
		FLOPs:       2 * float64(m) * float64(n) * float64(k),
		Bytes:       (float64(m)*float64(k)+float64(m)*float64(n))*float64(d.Size()) + weightBytes(w, d, n, k),
		WeightBytes: weightBytes(w, d, n, k),
		Need:        matmulNeeds(m, n, k, d, matmulForms[form], w),
		Setup: func(eng *lora.Engine, rng *rand.Rand) (*benchRun, error) {
			return setupMatmul(eng, rng, m, n, k, d, matmulForms[form], w)
		},
	}
}

// matmulNeeds is what setupMatmul allocates and dispatches for
// C[M,N] = op(A)·op(B) (tr: A, B stored transposed), see needs.
func matmulNeeds(m, n, k int, d dtype.DType, tr [2]bool, w weightFormat) needs {
	fm, fn, fk, ds := float64(m), float64(n), float64(k), float64(d.Size())
	var nd needs
	dims := func(r, c float64, t bool) (float64, float64) {
		if t {
			return c, r
		}
		return r, c
	}
	ar, ac := dims(fm, fk, tr[0])
	nd.buf(fmt.Sprintf("A [%.0f,%.0f] %s", ar, ac, d), ds, ar, ac)
	br, bc := dims(fk, fn, tr[1])
	// B is uploaded dense in d, also when it is then quantized to NF4 (and
	// the dense copy released).
	bname := fmt.Sprintf("B [%.0f,%.0f] %s", br, bc, d)
	if w.NF4 {
		nd.transient(bname, ds, br, bc)
		nd.device += weightBytes(w, d, n, k)
		nd.host += fk * fn * hostNF4
	} else {
		nd.buf(bname, ds, br, bc)
	}
	nd.buf(fmt.Sprintf("C [%.0f,%.0f] %s", fm, fn, d), ds, fm, fn)
	rows := math.Min(fm, maxRefRows)
	nd.host += hostInput(fm*fk, d) + hostInput(fk*fn, d) + // the inputs
		fm*fn*(ds+4) + 16*rows*fn + 8*fk // C read back; the sampled rows and their reference
	nd.products = [][2]float64{{fm, fn}}
	return nd.finish()
}

// setupMatmul uploads fresh inputs for C = op(A)·op(B); tr says whether A
// and B are stored transposed. B is the base weight: dense or NF4 as
// stored ([N,K] when transposed, else [K,N]).
func setupMatmul(eng *lora.Engine, rng *rand.Rand, m, n, k int, d dtype.DType, tr [2]bool, wf weightFormat) (*benchRun, error) {
	dev := eng.Device()
	ta, tb := tr[0], tr[1]
	// Fresh N(0,1) inputs rounded to d: the reference sees what the GPU stores.
	a := ref.RoundTo(d, ref.Random(rng, m*k, 1))
	b := ref.RoundTo(d, ref.Random(rng, k*n, 1))
	var held tensors
	var w lora.Weight
	release := func() {
		held.Release()
		releaseWeight(w)
	}
	fail := func(err error) (*benchRun, error) {
		release()
		return nil, err
	}
	ashape := []int{m, k}
	if ta {
		ashape = []int{k, m}
	}
	at, err := held.upload(dev, d, a, ashape...)
	if err != nil {
		return fail(err)
	}
	am := lora.Dense(at)
	if ta {
		am = am.T()
	}
	bout, bin := k, n
	if tb {
		bout, bin = n, k
	}
	// b becomes what the GPU multiplies by (dequantized for NF4).
	if w, b, err = uploadWeight(dev, wf, d, b, bout, bin); err != nil {
		return fail(err)
	}
	bm := lora.Dense(w.Dense)
	if w.NF4 != nil {
		bm = lora.NF4(w.NF4)
	}
	if tb {
		bm = bm.T()
	}
	c, err := dev.NewTensor(d, m, n)
	if err != nil {
		return fail(err)
	}
	held = append(held, c)
	rows := sampleRows(m, maxRefRows)
	var want []float64 // the reference rows, computed once: -sweep validates every engine
	return &benchRun{
		Record: func(rec *vk.Recorder) error { return eng.MatmulTo(rec, c, am, bm, 1, 0) },
		Validate: func() (float64, float64, string, error) {
			got32, err := c.Float32()
			if err != nil {
				return 0, 0, "", err
			}
			got := make([]float64, 0, len(rows)*n)
			for _, i := range rows {
				got = append(got, ref.FromFloat32(got32[i*n:(i+1)*n])...)
			}
			if want == nil {
				want = matmulRows(a, b, rows, m, n, k, ta, tb)
			}
			detail := fmt.Sprintf("%s; worst: %s", rowsString(rows, m), ref.MismatchesRC(got, want, n, 3))
			// Inputs are exactly representable (pre-rounded), fp32
			// accumulation, one rounding of C: a product's bound.
			return ref.RelErr(got, want), ref.Tolerance(d).Product, detail, nil
		},
		Release:   release,
		SetEngine: func(e *lora.Engine) { eng = e },
	}, nil
}

// sampleRows picks at most max rows of m spread evenly, always including the
// first and last (tile edges are where kernels go wrong).
func sampleRows(m, max int) []int {
	if m <= max {
		rows := make([]int, m)
		for i := range rows {
			rows[i] = i
		}
		return rows
	}
	rows := make([]int, max)
	for j := range rows {
		rows[j] = j * (m - 1) / (max - 1)
	}
	return rows
}

func rowsString(rows []int, m int) string {
	if len(rows) == m {
		return fmt.Sprintf("all %d rows checked", m)
	}
	return fmt.Sprintf("%d of %d rows checked (worst row,col as sampled)", len(rows), m)
}

// matmulRows computes the given rows of op(A)·op(B) in float64: A is stored
// [M,K] ([K,M] when ta), B [K,N] ([N,K] when tb). The result has len(rows)
// rows of n.
func matmulRows(a, b []float64, rows []int, m, n, k int, ta, tb bool) []float64 {
	out := make([]float64, len(rows)*n)
	arow := make([]float64, k)
	for r, i := range rows {
		for p := 0; p < k; p++ {
			if ta {
				arow[p] = a[p*m+i]
			} else {
				arow[p] = a[i*k+p]
			}
		}
		c := out[r*n : (r+1)*n]
		if tb { // B stored [N,K]: dot products of contiguous rows
			for j := range c {
				bj := b[j*k : (j+1)*k]
				var s float64
				for p, x := range arow {
					s += x * bj[p]
				}
				c[j] = s
			}
			continue
		}
		for p, x := range arow {
			bp := b[p*n : (p+1)*n]
			for j := range c {
				c[j] += x * bp[j]
			}
		}
	}
	return out
}
