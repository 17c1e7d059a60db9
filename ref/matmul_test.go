package ref

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// naiveMatmul is the textbook triple loop with explicit transposed indexing.
func naiveMatmul(a, b []float64, m, n, k int, transA, transB bool) []float64 {
	c := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			s := 0.0
			for p := 0; p < k; p++ {
				av, bv := a[i*k+p], b[p*n+j]
				if transA {
					av = a[p*m+i]
				}
				if transB {
					bv = b[j*k+p]
				}
				s += av * bv
			}
			c[i*n+j] = s
		}
	}
	return c
}

func TestMatmulMatchesNaive(t *testing.T) {
	dims := []int{1, 7, 13, 64, 129}
	abs := []struct{ alpha, beta float64 }{{1, 0}, {0.5, -1.25}, {-2, 1}}
	rng := newRNG(1)
	for _, m := range dims {
		for _, n := range dims {
			for _, k := range dims {
				for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
					a, b := Random(rng, m*k, 1), Random(rng, k*n, 1)
					want := naiveMatmul(a, b, m, n, k, tr[0], tr[1])
					name := fmt.Sprintf("m%d n%d k%d tA%v tB%v", m, n, k, tr[0], tr[1])
					checkClose(t, name, Matmul(a, b, m, n, k, tr[0], tr[1]), want, 1e-14)
					ab := abs[(m+n+k)%len(abs)]
					c0 := Random(rng, m*n, 1)
					c := append([]float64(nil), c0...)
					MatmulAcc(c, a, b, m, n, k, tr[0], tr[1], ab.alpha, ab.beta)
					for i := range want {
						want[i] = ab.alpha*want[i] + ab.beta*c0[i]
					}
					checkClose(t, name+fmt.Sprintf(" alpha%g beta%g", ab.alpha, ab.beta), c, want, 1e-14)
				}
			}
		}
	}
}

func TestMatmulAccBetaZeroIgnoresC(t *testing.T) {
	rng := newRNG(2)
	a, b := Random(rng, 7*13, 1), Random(rng, 13*5, 1)
	c := make([]float64, 7*5)
	for i := range c {
		c[i] = math.NaN()
	}
	MatmulAcc(c, a, b, 7, 5, 13, false, false, 3, 0)
	want := naiveMatmul(a, b, 7, 5, 13, false, false)
	for i := range want {
		want[i] *= 3
	}
	checkClose(t, "beta=0 over NaN", c, want, 1e-14)
}

func TestMatmulIsDeterministic(t *testing.T) {
	rng := newRNG(3)
	const m, n, k = 129, 65, 1001
	for _, tr := range [][2]bool{{false, false}, {true, true}} {
		a, b := Random(rng, m*k, 1), Random(rng, k*n, 1)
		c0 := Random(rng, m*n, 1)
		var first []float64
		for _, workers := range []int{1, 2, 3, 7, 16, 200} {
			c := append([]float64(nil), c0...)
			matmulAcc(c, a, b, m, n, k, tr[0], tr[1], 0.5, 0.25, workers)
			if first == nil {
				first = c
				continue
			}
			for i := range c {
				if math.Float64bits(c[i]) != math.Float64bits(first[i]) {
					t.Fatalf("trans %v workers %d: element %d = %v, with 1 worker %v", tr, workers, i, c[i], first[i])
				}
			}
		}
	}
}

func TestMatmulEmptyAndBadShapes(t *testing.T) {
	require.Empty(t, Matmul(nil, nil, 0, 0, 0, false, false))
	c := []float64{1, 2}
	MatmulAcc(c, nil, nil, 1, 2, 0, false, false, 1, 3) // k = 0: C = beta·C
	require.Equal(t, []float64{3, 6}, c)
	require.PanicsWithValue(t, "ref: Matmul: len(A) = 5, want 6", func() {
		Matmul(make([]float64, 5), make([]float64, 6), 2, 2, 3, false, false)
	})
	require.Panics(t, func() { Matmul(nil, nil, -1, 0, 0, false, false) })
}

func TestTranspose(t *testing.T) {
	a := []float64{1, 2, 3, 4, 5, 6} // [2, 3]
	require.Equal(t, []float64{1, 4, 2, 5, 3, 6}, Transpose(a, 2, 3))
	rng := newRNG(4)
	x := Random(rng, 13*7, 1)
	require.Equal(t, x, Transpose(Transpose(x, 13, 7), 7, 13))
}

func BenchmarkMatmul1000(b *testing.B) {
	rng := newRNG(5)
	const n = 1000
	x, y := Random(rng, n*n, 1), Random(rng, n*n, 1)
	for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
		b.Run(fmt.Sprintf("tA%v_tB%v", tr[0], tr[1]), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				Matmul(x, y, n, n, n, tr[0], tr[1])
			}
			b.ReportMetric(2*n*n*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
