package ref

import (
	"fmt"
	"runtime"
	"sync"
)

// Matmul returns C = op(A)·op(B), C [m, n], where op(A) is [m, k] and op(B) is
// [k, n]. A is stored [m, k], or [k, m] when transA (op(A) = Aᵀ); B is stored
// [k, n], or [n, k] when transB (op(B) = Bᵀ).
func Matmul(a, b []float64, m, n, k int, transA, transB bool) []float64 {
	c := make([]float64, m*n)
	MatmulAcc(c, a, b, m, n, k, transA, transB, 1, 0)
	return c
}

// MatmulAcc updates c in place: C = alpha·op(A)·op(B) + beta·C, with C [m, n]
// and op(A), op(B) and their storage as for Matmul. When beta is 0, C is
// overwritten without being read (NaNs in it do not propagate), as in BLAS.
//
// Rows of C are split among up to runtime.NumCPU() goroutines. Each element
// is computed by exactly one goroutine as a sum over p = 0…k−1 in ascending
// order, so the result does not depend on the number of goroutines.
func MatmulAcc(c, a, b []float64, m, n, k int, transA, transB bool, alpha, beta float64) {
	matmulAcc(c, a, b, m, n, k, transA, transB, alpha, beta, runtime.NumCPU())
}

// serialWork is the multiply-add count below which goroutines cost more than
// they save.
const serialWork = 1 << 16

func matmulAcc(c, a, b []float64, m, n, k int, transA, transB bool, alpha, beta float64, workers int) {
	checkDims("Matmul", m, n, k)
	checkLen("Matmul", "C", c, m*n)
	checkLen("Matmul", "A", a, m*k)
	checkLen("Matmul", "B", b, k*n)
	workers = min(workers, m)
	if m*n*k < serialWork {
		workers = 1
	}
	if workers <= 1 {
		matmulRows(c, a, b, m, n, k, transA, transB, alpha, beta, 0, m)
		return
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		i0, i1 := w*m/workers, (w+1)*m/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			matmulRows(c, a, b, m, n, k, transA, transB, alpha, beta, i0, i1)
		}()
	}
	wg.Wait()
}

// matmulRows computes rows [i0, i1) of C. Row i of op(A) is gathered into a
// contiguous buffer; with op(B) stored [k, n] the loop runs i-k-j (streaming
// rows of B), with B stored [n, k] it takes dot products of rows. Both sum
// over p in ascending order.
func matmulRows(c, a, b []float64, m, n, k int, transA, transB bool, alpha, beta float64, i0, i1 int) {
	arow := make([]float64, k)
	acc := make([]float64, n)
	for i := i0; i < i1; i++ {
		if transA {
			for p := range arow {
				arow[p] = a[p*m+i]
			}
		} else {
			copy(arow, a[i*k:(i+1)*k])
		}
		if transB {
			for j := range acc {
				brow := b[j*k : (j+1)*k]
				s := 0.0
				for p, av := range arow {
					s += av * brow[p]
				}
				acc[j] = s
			}
		} else {
			clear(acc)
			for p, av := range arow {
				brow := b[p*n : (p+1)*n]
				for j, bv := range brow {
					acc[j] += av * bv
				}
			}
		}
		crow := c[i*n : (i+1)*n]
		for j, s := range acc {
			if beta == 0 {
				crow[j] = alpha * s
			} else {
				crow[j] = alpha*s + beta*crow[j]
			}
		}
	}
}

// Transpose returns Aᵀ [cols, rows] of A [rows, cols].
func Transpose(a []float64, rows, cols int) []float64 {
	checkLen("Transpose", "A", a, rows*cols)
	t := make([]float64, len(a))
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			t[j*rows+i] = a[i*cols+j]
		}
	}
	return t
}

func checkDims(fn string, dims ...int) {
	for _, d := range dims {
		if d < 0 {
			panic(fmt.Sprintf("ref: %s: negative dimension in %v", fn, dims))
		}
	}
}

func checkLen(fn, name string, x []float64, want int) {
	if len(x) != want {
		panic(fmt.Sprintf("ref: %s: len(%s) = %d, want %d", fn, name, len(x), want))
	}
}
