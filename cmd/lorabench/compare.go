package main

import (
	"fmt"
	"io"
)

// NF4 vs dense: with -weight dense,nf4 every NF4 case runs right after its
// dense twin (same op, dtype, form and shape), so each NF4 row can carry the
// ratios of its time and step peak to the dense row's, and the table ends
// with one comparison line per pair.

// twinKey is what an NF4 row shares with its dense twin.
type twinKey struct {
	op, dtype, form string
	m, n, k         int
}

func keyOf(r *result) twinKey {
	return twinKey{r.Op, r.DType, r.Form, r.M, r.N, r.K}
}

// twins holds the dense rows seen so far and the pairs made.
type twins struct {
	dense map[twinKey]result
	pairs [][2]result // dense, nf4
}

// pair records a dense row, or sets an NF4 row's ratios when both it and
// its dense twin were validated and timed.
func (t *twins) pair(r *result) {
	if r.Weight != "nf4" {
		if t.dense == nil {
			t.dense = map[twinKey]result{}
		}
		t.dense[keyOf(r)] = *r
		return
	}
	d, ok := t.dense[keyOf(r)]
	if !ok || !d.Validated || !r.Validated || !(d.MsMedian > 0) {
		return
	}
	r.MsVsDense = jsonNum(r.MsMedian / d.MsMedian)
	if d.PeakExtraMiB > 0 {
		r.PeakVsDense = jsonNum(r.PeakExtraMiB / d.PeakExtraMiB)
	}
	if d.PeakTotalMiB > 0 {
		r.PeakTotalVsDense = jsonNum(r.PeakTotalMiB / d.PeakTotalMiB)
	}
	t.pairs = append(t.pairs, [2]result{d, *r})
}

// write prints one line per pair, nothing when there are none.
func (t *twins) write(w io.Writer) {
	if len(t.pairs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nnf4 vs dense, nf4 / dense: ms median; peak MiB the step allocates; weights = MiB the base weights hold;\n")
	fmt.Fprintf(w, "total = MiB allocated at the step's peak (weights, adapters, inputs and the step's peak)\n")
	for _, p := range t.pairs {
		d, q := p[0], p[1]
		fmt.Fprintf(w, "%s %s %s %dx%dx%d: ms %s / %s = %s  peak %s / %s = %s  weights %s / %s = %s  total %s / %s = %s\n",
			d.Op, d.DType, d.Form, d.M, d.N, d.K,
			ms(q.MsMedian), ms(d.MsMedian), ratio(q.MsMedian, d.MsMedian),
			mib(q.PeakExtraMiB), mib(d.PeakExtraMiB), ratio(q.PeakExtraMiB, d.PeakExtraMiB),
			mib(q.WeightMiB), mib(d.WeightMiB), ratio(q.WeightMiB, d.WeightMiB),
			mib(q.PeakTotalMiB), mib(d.PeakTotalMiB), ratio(q.PeakTotalMiB, d.PeakTotalMiB))
	}
}

// ratio prints a/b as "1.23×", or "-" when b is zero.
func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", a/b)
}
