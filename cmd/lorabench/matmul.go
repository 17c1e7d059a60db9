package main

import (
	"fmt"
	"io"
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

func cmdMatmul(args []string, stdout, stderr io.Writer) error {
	const synopsis = "[-m M -n N -k K | -sizes S,...] [-dtype f32|f16|bf16] [-form nt|nn|tn] [-weight dense,nf4] [-reps N] [-warmup N] [-warmup-ms MS] [-device SEL] [-json] [-plot FILE.png]"
	fs := newFlags("matmul", synopsis, stderr)
	m := fs.Int("m", 1024, "rows of C and op(A)")
	n := fs.Int("n", 1024, "columns of C and op(B)")
	k := fs.Int("k", 1024, "inner dimension")
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
			shapes = append(shapes, [3]int{v, v, v})
		}
	} else {
		for _, f := range []struct {
			name string
			v    int
		}{{"m", *m}, {"n", *n}, {"k", *k}} {
			if f.v < 1 {
				return usagef("-%s must be ≥ 1 (got %d)", f.name, f.v)
			}
		}
		shapes = [][3]int{{*m, *n, *k}}
	}
	var cases []benchCase
	for _, s := range shapes {
		for _, d := range dtypes {
			for _, w := range wfs {
				cases = append(cases, matmulCase(s[0], s[1], s[2], d, *form, w))
			}
		}
	}
	return runCases(cases, o, stdout, stderr)
}

// matmulCase is C[M,N] = op(A)[M,K]·op(B)[K,N] with every operand in d, or
// with B an NF4 weight decoded to d when w says so. FLOPs 2·M·N·K; bytes
// (M·K + M·N)·sizeof(d) plus B's bytes (K·N·sizeof(d) dense, see
// weightBytes for NF4).
func matmulCase(m, n, k int, d dtype.DType, form string, w weightFormat) benchCase {
	return benchCase{
		Op: "matmul", Form: form, DType: d, M: m, N: n, K: k, Weight: w,
		FLOPs:       2 * float64(m) * float64(n) * float64(k),
		Bytes:       float64(m*k+m*n)*float64(d.Size()) + weightBytes(w, d, n, k),
		WeightBytes: weightBytes(w, d, n, k),
		Setup: func(eng *lora.Engine, rng *rand.Rand) (*benchRun, error) {
			return setupMatmul(eng, rng, m, n, k, d, matmulForms[form], w)
		},
	}
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
	return &benchRun{
		Record: func(rec *vk.Recorder) error { return eng.MatmulTo(rec, c, am, bm, 1, 0) },
		Validate: func() (float64, float64, string, error) {
			got32, err := c.Float32()
			if err != nil {
				return 0, 0, "", err
			}
			rows := sampleRows(m, maxRefRows)
			got := make([]float64, 0, len(rows)*n)
			for _, i := range rows {
				got = append(got, ref.FromFloat32(got32[i*n:(i+1)*n])...)
			}
			want := matmulRows(a, b, rows, m, n, k, ta, tb)
			detail := fmt.Sprintf("%s; worst: %s", rowsString(rows, m), ref.MismatchesRC(got, want, n, 3))
			// Inputs are exactly representable (pre-rounded), fp32
			// accumulation, one rounding of C: a product's bound.
			return ref.RelErr(got, want), ref.Tolerance(d).Product, detail, nil
		},
		Release: release,
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
