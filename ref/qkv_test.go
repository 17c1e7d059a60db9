package ref

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestQKVBackwardFiniteDifference(t *testing.T) {
	rng := newRNG(20)
	// [m, in, q.Out, k.Out = v.Out]: grouped-query (k, v narrower than q),
	// M = 1, odd sizes.
	shapes := [][4]int{{1, 9, 12, 4}, {3, 13, 16, 8}, {4, 17, 15, 5}}
	for _, sh := range shapes {
		for _, r := range []int{1, 7} {
			for si, s := range scales(r) {
				m, in, qo, kvo := sh[0], sh[1], sh[2], sh[3]
				t.Run(fmt.Sprintf("m%d_in%d_q%d_kv%d_r%d_s%.3g", m, in, qo, kvo, r, s), func(t *testing.T) {
					// Each projection gets its own scale.
					ss := scales(r)
					q := randProj(rng, qo, in, r, s)
					k := randProj(rng, kvo, in, r, ss[(si+1)%3])
					v := randProj(rng, kvo, in, r, ss[(si+2)%3])
					x := Random(rng, m*in, 1)
					rq, rk, rv := Random(rng, m*qo, 1), Random(rng, m*kvo, 1), Random(rng, m*kvo, 1)
					loss := func() float64 {
						Q, K, V := QKVForward(x, m, q, k, v)
						return dot(Q, rq) + dot(K, rk) + dot(V, rv)
					}

					dX, dq, dk, dv := QKVBackward(x, rq, rk, rv, m, q, k, v)
					checkClose(t, "dX", dX, numGrad(x, loss), fdTol)
					for _, c := range []struct {
						name string
						p    *Proj
						g    Grads
					}{{"q", q, dq}, {"k", k, dk}, {"v", v, dv}} {
						checkClose(t, "d"+c.name+".A", c.g.DA, numGrad(c.p.A, loss), fdTol)
						checkClose(t, "d"+c.name+".B", c.g.DB, numGrad(c.p.B, loss), fdTol)
					}
				})
			}
		}
	}
}

// TestQKVMatchesLinear checks that QKV is three LinearForward calls and that
// its dX is the sum of theirs, also when one projection has no adapter.
func TestQKVMatchesLinear(t *testing.T) {
	rng := newRNG(21)
	const m, in, qo, kvo = 5, 11, 12, 6
	q := randProj(rng, qo, in, 3, 0.37)
	k := randProj(rng, kvo, in, 0, 0) // no adapter on k
	v := randProj(rng, kvo, in, 1, 2)
	x := Random(rng, m*in, 1)
	gq, gk, gv := Random(rng, m*qo, 1), Random(rng, m*kvo, 1), Random(rng, m*kvo, 1)

	Q, K, V := QKVForward(x, m, q, k, v)
	require.Equal(t, LinearForward(x, m, q), Q)
	require.Equal(t, LinearForward(x, m, k), K)
	require.Equal(t, LinearForward(x, m, v), V)

	dX, dq, dk, dv := QKVBackward(x, gq, gk, gv, m, q, k, v)
	want := make([]float64, m*in)
	for _, c := range []struct {
		p    *Proj
		g    []float64
		got  Grads
		name string
	}{{q, gq, dq, "q"}, {k, gk, dk, "k"}, {v, gv, dv, "v"}} {
		d, gr := LinearBackward(x, c.g, m, c.p)
		for i := range want {
			want[i] += d[i]
		}
		require.Equal(t, gr, c.got, c.name)
	}
	checkClose(t, "dX", dX, want, 1e-14)
	require.Nil(t, dk.DA)
}

func TestQKVPanicsOnMismatchedIn(t *testing.T) {
	rng := newRNG(22)
	q, k, v := randProj(rng, 4, 6, 1, 1), randProj(rng, 2, 5, 1, 1), randProj(rng, 2, 6, 1, 1)
	require.PanicsWithValue(t, "ref: QKVForward: q, k and v must have the same In", func() {
		QKVForward(make([]float64, 6), 1, q, k, v)
	})
}
