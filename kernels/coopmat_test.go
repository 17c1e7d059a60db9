package kernels

import (
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/quant/quanttest"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// requireCoopMatEnv, set to 1 (make test-coopmat and the GPU scripts do),
// turns a device without cooperative matrices from a skip into a failure of
// these tests: for f16 always, for bf16 where the driver offers bf16
// cooperative matrices (sid's lavapipe has f16 only: its bf16 tests skip).
const requireCoopMatEnv = "VKLORA_REQUIRE_COOPMAT"

// coopFixture returns the fixture when its device runs d on cooperative
// matrices. Debian 12's lavapipe has none; sid's has f16 (make test-coopmat).
func coopFixture(t *testing.T, d dtype.DType) *fixture {
	f := newFixture(t)
	if !f.eng.CoopMat(d) {
		if os.Getenv(requireCoopMatEnv) == "1" && (d != dtype.BF16 || f.Dev.Caps().BFloat16CoopMat) {
			t.Fatalf("%s=1 but %s has no %s cooperative matrices with fp32 accumulation", requireCoopMatEnv, f.Dev.Info().Name, d)
		}
		t.Skipf("%s has no %s cooperative matrices", f.Dev.Info().Name, d)
	}
	return f
}

// requireCoopMat2Env, set to 1, makes a device without
// VK_NV_cooperative_matrix2 fail the tests of the workgroup-scope kernel.
const requireCoopMat2Env = "VKLORA_REQUIRE_COOPMAT2"

// coopPaths returns the cooperative kernels the fixture's device runs for
// d, by plan suffix: the subgroup-scope one always, the workgroup-scope
// one where the device has it.
func coopPaths(t *testing.T, f *fixture, d dtype.DType) []string {
	paths := []string{"_coopmat"}
	switch {
	case f.eng.CoopMat2(d):
		paths = append(paths, "_cm2")
	case os.Getenv(requireCoopMat2Env) == "1":
		t.Fatalf("%s=1 but %s has no %s workgroup-scope cooperative matrices", requireCoopMat2Env, f.Dev.Info().Name, d)
	}
	return paths
}

// usePath makes the engine pick the cooperative kernel named by suffix and
// returns the function that restores it.
func (e *Dispatcher) usePath(suffix string) func() {
	old := e.opt.DisableCoopMat2
	e.opt.DisableCoopMat2 = suffix != "_cm2"
	return func() { e.opt.DisableCoopMat2 = old }
}

// requireKernel fails unless g runs on the cooperative kernel of path
// (an NF4 B on the workgroup-scope path may run as dense slabs on it).
func (f *fixture) requireKernel(g Gemm, path string) {
	f.T.Helper()
	got, err := f.eng.KernelFor(g)
	require.NoError(f.T, err)
	if path == "_cm2" && got == "nf4-slabs" {
		return
	}
	require.Equal(f.T, path[1:], got, "the cooperative kernel must run")
}

// forEachCoopPath runs body as one subtest per cooperative kernel.
func forEachCoopPath(t *testing.T, f *fixture, d dtype.DType, body func(t *testing.T, suffix string)) {
	for _, p := range coopPaths(t, f, d) {
		t.Run(p[1:], func(t *testing.T) {
			defer f.eng.usePath(p)()
			body(t, p)
		})
	}
}

// coopShapes: odd sizes (unaligned chunks, partial tiles), aligned ones
// (128-bit loads), a long K with few tiles (split-K) and a large output.
var coopShapes = [][3]int{{133, 97, 75}, {256, 192, 128}, {64, 72, 3000}, {2900, 2900, 24}}

func TestCoopMatMatmul(t *testing.T) {
	for _, d := range []dtype.DType{dtype.F16, dtype.BF16} {
		t.Run(d.String(), func(t *testing.T) {
			f := coopFixture(t, d)
			forEachCoopPath(t, f, d, func(t *testing.T, path string) {
				const alpha, beta = 0.37, -1.5
				f.prepareProducts(t, d, forms, coopShapes, alpha, beta)
				for _, fm := range forms {
					for _, s := range coopShapes {
						m, n, k := s[0], s[1], s[2]
						t.Run(fmt.Sprintf("%s/%dx%dx%d", fm.name, m, n, k), func(t *testing.T) {
							f := f.in(t)
							a := f.Random(d, m*k, 1)
							b := f.Random(d, k*n, 1)
							c0 := f.Random(d, m*n, 1)
							A := Dense(f.Upload(d, a, storedShape(fm.transA, m, k)...))
							B := Dense(f.Upload(d, b, storedShape(fm.transB, k, n)...))
							if fm.transA {
								A = A.T()
							}
							if fm.transB {
								B = B.T()
							}
							c := f.Upload(d, c0, m, n)
							f.requireKernel(Gemm{C: c, A: A, B: B}, path)
							rec := f.Recorder()
							require.NoError(t, f.eng.MatmulTo(rec, c, A, B, alpha, beta))
							require.NoError(t, rec.Submit())
							want := append([]float64(nil), c0...)
							ref.MatmulAcc(want, a, b, m, n, k, fm.transA, fm.transB, alpha, beta)
							vktest.ExpectClose(t, "C", f.Download(c), ref.RoundTo(d, want), n, ref.Tolerance(d).Product)
						})
					}
				}
			})
		})
	}
}

// The rank products X·Aᵀ and G·B into f32 [M, r] on the workgroup-scope
// kernel's narrow tiles: ranks below, at and between their widths, with
// short and split K and beta ≠ 0. Only where the device has that kernel.
func TestCM2NarrowTiles(t *testing.T) {
	for _, d := range []dtype.DType{dtype.F16, dtype.BF16} {
		t.Run(d.String(), func(t *testing.T) {
			f := coopFixture(t, d)
			if !slices.Contains(coopPaths(t, f, d), "_cm2") {
				t.Skipf("%s has no %s workgroup-scope cooperative matrices", f.Dev.Info().Name, d)
			}
			for _, fm := range forms[:2] {
				for _, s := range [][3]int{{133, 7, 75}, {2900, 16, 3000}, {2900, 24, 301}, {64, 32, 4000}} {
					m, n, k := s[0], s[1], s[2]
					t.Run(fmt.Sprintf("%s/%dx%dx%d", fm.name, m, n, k), func(t *testing.T) {
						f := f.in(t)
						a, b, c0 := f.Random(d, m*k, 1), f.Random(d, k*n, 1), f.Random(dtype.F32, m*n, 1)
						A := Dense(f.Upload(d, a, m, k))
						B := Dense(f.Upload(d, b, storedShape(fm.transB, k, n)...))
						if fm.transB {
							B = B.T()
						}
						g := Gemm{C: f.Upload(dtype.F32, c0, m, n), A: A, B: B, Alpha: 0.37, Beta: -1.5}
						f.requireKernel(g, "_cm2")
						rec := f.Recorder()
						require.NoError(t, f.eng.Gemm(rec, g))
						require.NoError(t, rec.Submit())
						want := append([]float64(nil), c0...)
						ref.MatmulAcc(want, a, b, m, n, k, false, fm.transB, 0.37, -1.5)
						vktest.ExpectClose(t, "C", f.Download(g.C), want, n, ref.Tolerance(dtype.F32).Product)
					})
				}
			}
		})
	}
}

// The fused LoRA term (rank 7, scale 0.37) on both forward and dX forms,
// into the layer dtype and into f32.
func TestCoopMatFusedTerm(t *testing.T) {
	for _, d := range []dtype.DType{dtype.F16, dtype.BF16} {
		t.Run(d.String(), func(t *testing.T) {
			f := coopFixture(t, d)
			forEachCoopPath(t, f, d, func(t *testing.T, path string) {
				for _, fm := range forms[:2] {
					for _, cd := range []dtype.DType{d, dtype.F32} {
						m, n, k, r := 137, 203, 88, 7
						t.Run(fmt.Sprintf("%s/into_%s", fm.name, cd), func(t *testing.T) {
							f := f.in(t)
							x := f.Random(d, m*k, 1)
							w := f.Random(d, n*k, 1)
							xa := f.Random(dtype.F32, m*r, 1)
							bm := f.Random(d, n*r, 1)
							B := Dense(f.Upload(d, w, storedShape(fm.transB, k, n)...))
							if fm.transB {
								B = B.T()
							}
							c := f.Poisoned(cd, m, n)
							rec := f.Recorder()
							const s = 0.37
							err := f.eng.Gemm(rec, Gemm{C: c, A: Dense(f.Upload(d, x, m, k)), B: B,
								A2: Dense(f.Upload(dtype.F32, xa, m, r)), B2: Dense(f.Upload(d, bm, n, r)).T(), Alpha: 1, Alpha2: s})
							require.NoError(t, err)
							require.NoError(t, rec.Submit())
							want := ref.Matmul(x, w, m, n, k, false, fm.transB)
							ref.MatmulAcc(want, xa, bm, m, n, r, false, true, s, 1)
							vktest.ExpectClose(t, "C", f.Download(c), ref.RoundTo(cd, want), n, ref.Tolerance(d).Product)
						})
					}
				}
			})
		})
	}
}

// NF4 B tiles decoded in the cooperative kernels equal the dense
// dequantized weight bit for bit, in both weight forms, and both match the
// reference; the weight's sizes are not multiples of the block (120) or not
// even of 8 (117, which the workgroup-scope kernel leaves to the other).
func TestCoopMatNF4(t *testing.T) {
	for _, d := range []dtype.DType{dtype.F16, dtype.BF16} {
		t.Run(d.String(), func(t *testing.T) {
			f := coopFixture(t, d)
			forEachCoopPath(t, f, d, func(t *testing.T, path string) {
				for _, in := range []int{117, 120} {
					if path == "_cm2" && in%8 != 0 {
						continue
					}
					const m, out = 150, 203
					q, dw := quanttest.NF4Weight(f.Fixture, d, out, in, 64, true)
					wd := ref.FromFloat32(quant.Dequantize(q))
					dense := f.Upload(d, wd, out, in)
					for _, trans := range []bool{true, false} { // X·Wᵀ, G·W
						k, n := in, out
						if !trans {
							k, n = out, in
						}
						x := f.Random(d, m*k, 1)
						xt := f.Upload(d, x, m, k)
						got, twin := f.Poisoned(d, m, n), f.Poisoned(d, m, n)
						Bq, Bd := NF4(dw), Dense(dense)
						if trans {
							Bq, Bd = Bq.T(), Bd.T()
						}
						f.requireKernel(Gemm{C: got, A: Dense(xt), B: Bq}, path)
						rec := f.Recorder()
						require.NoError(t, f.eng.MatmulTo(rec, got, Dense(xt), Bq, 1, 0))
						require.NoError(t, f.eng.MatmulTo(rec, twin, Dense(xt), Bd, 1, 0))
						require.NoError(t, rec.Submit())
						name := fmt.Sprintf("NF4 in=%d trans=%v", in, trans)
						f.RequireSameTensors(name, []*vk.Tensor{got}, []*vk.Tensor{twin})
						want := ref.RoundTo(d, ref.Matmul(x, wd, m, n, k, false, trans))
						vktest.ExpectClose(t, name, f.Download(got), want, n, ref.Tolerance(d).Product)
					}
				}
			})
		})
	}
}

// The two paths agree: a bf16 MLP step with cooperative matrices on and
// off gives results within the dtype's tolerance of each other.
func TestCoopMatMatchesScalar(t *testing.T) {
	const d = dtype.BF16
	f := coopFixture(t, d)
	m, n, k := 300, 260, 520
	a := f.Random(d, m*k, 1)
	b := f.Random(d, n*k, 1)
	at, bt := f.Upload(d, a, m, k), f.Upload(d, b, n, k)
	forEachCoopPath(t, f, d, func(t *testing.T, _ string) {
		run := func(on bool) []float64 {
			f.eng.opt.DisableCoopMat = !on
			defer func() { f.eng.opt.DisableCoopMat = false }()
			c := f.Poisoned(d, m, n)
			rec := f.Recorder()
			require.NoError(t, f.eng.MatmulTo(rec, c, Dense(at), Dense(bt).T(), 1, 0))
			require.NoError(t, rec.Submit())
			return f.Download(c)
		}
		vktest.ExpectClose(t, "coopmat vs scalar", run(true), run(false), n, ref.Tolerance(d).Product)
	})
}

// Every fragment grid the subgroup-scope kernel is built for computes the
// right product, each forced by a tile override at the device's shape
// (the default order picks only some of them for a given size), and so
// does the single-buffered form, forced by a K step whose two buffers do
// not fit the device's shared memory: an odd shape with a partial last
// tile, a K that is not a multiple of BK, and alpha, beta ≠ 1, 0.
func TestCoopMatEveryGrid(t *testing.T) {
	const d = dtype.F16
	base := coopFixture(t, d)
	s := base.eng.coop[d].shape
	maxShared := int(base.Dev.Caps().MaxSharedMemory)
	type grid struct {
		name string
		tile CoopTile
	}
	var grids []grid
	for _, fr := range shaders.CoopFrags {
		grids = append(grids, grid{fmt.Sprintf("f%d%d", fr[0], fr[1]),
			coopConfig{SGM: 2, SGN: 2, FM: int(fr[0]), FN: int(fr[1]), BK: 32}.tile(s)})
	}
	// The single-buffered form and the late global loads (the tuning knobs)
	// with the smallest grid (a long K step instead makes one pipeline take
	// minutes to compile on CPU drivers).
	one := coopConfig{SGM: 2, SGN: 2, FM: 2, FN: 2, BK: 32}.tile(s)
	require.True(t, one.twoBufs(maxShared))
	for _, k := range []struct {
		name             string
		oneBuf, noPrefet bool
	}{{"f22-single", true, false}, {"f22-late-loads", false, true}, {"f22-single-late-loads", true, true}} {
		v := one
		v.OneBuf, v.NoPrefetch = k.oneBuf, k.noPrefet
		grids = append(grids, grid{k.name, v})
	}
	// Sixteen subgroups on a one-matrix K step: fewer staging chunks than
	// invocations, so the last staging round is partial (guarded).
	partial := coopConfig{SGM: 4, SGN: 4, FM: 2, FN: 2, BK: max(8, int(s.K))}.tile(s)
	require.Less(t, partial.BM*partial.BK/8, partial.subgroups()*base.eng.coop[d].subgroup)
	grids = append(grids, grid{"f22-partial-staging", partial})
	for _, g := range grids {
		tile := g.tile
		t.Run(g.name, func(t *testing.T) {
			f := newFixtureWith(t, Options{CoopMatTile: &tile, DisableCoopMat2: true})
			require.Equal(t, !tile.OneBuf, f.eng.coop[d].tiles[0].twoBufs(f.eng.coop[d].maxShared), "the buffering asked for must run")
			require.True(t, f.eng.CoopMat(d), "tile %+v at shape %+v refused", tile, s)
			m, n, k := max(2*tile.BM, 64)+7, max(tile.BN, 64)+5, tile.BK+43
			a, b, c0 := f.Random(d, m*k, 1), f.Random(d, n*k, 1), f.Random(d, m*n, 1)
			A, B := Dense(f.Upload(d, a, m, k)), Dense(f.Upload(d, b, n, k)).T()
			c := f.Upload(d, c0, m, n)
			f.requireKernel(Gemm{C: c, A: A, B: B}, "_coopmat")
			rec := f.Recorder()
			require.NoError(t, f.eng.MatmulTo(rec, c, A, B, 0.37, -1.5))
			require.NoError(t, rec.Submit())
			want := append([]float64(nil), c0...)
			ref.MatmulAcc(want, a, b, m, n, k, false, true, 0.37, -1.5)
			vktest.ExpectClose(t, "C", f.Download(c), ref.RoundTo(d, want), n, ref.Tolerance(d).Product)
		})
	}
}

// Every subgroup-scope shape the device reports with fp32 accumulation
// (8×8×8 on lavapipe; 16×16×16, 16×8×16 and 16×8×8 on NVIDIA) runs the
// kernel, each forced by Options.CoopMatShape, at its default tile.
func TestCoopMatEveryShape(t *testing.T) {
	for _, d := range []dtype.DType{dtype.F16, dtype.BF16} {
		t.Run(d.String(), func(t *testing.T) {
			base := coopFixture(t, d)
			in := map[dtype.DType]vk.ComponentType{dtype.F16: vk.ComponentF16, dtype.BF16: vk.ComponentBF16}[d]
			n := 0
			for _, s := range base.Dev.Caps().CoopMatShapes {
				if !s.Multiplies(in, vk.ComponentF32) {
					continue
				}
				n++
				shape := [3]int{int(s.M), int(s.N), int(s.K)}
				t.Run(fmt.Sprintf("%dx%dx%d", s.M, s.N, s.K), func(t *testing.T) {
					f := newFixtureWith(t, Options{CoopMatShape: &shape, DisableCoopMat2: true})
					require.True(t, f.eng.CoopMat(d), "shape %v refused", shape)
					require.Equal(t, s, f.eng.coop[d].shape)
					const m, n, k = 200, 130, 70
					a, b := f.Random(d, m*k, 1), f.Random(d, n*k, 1)
					A, B := Dense(f.Upload(d, a, m, k)), Dense(f.Upload(d, b, n, k)).T()
					c := f.Poisoned(d, m, n)
					f.requireKernel(Gemm{C: c, A: A, B: B}, "_coopmat")
					rec := f.Recorder()
					require.NoError(t, f.eng.MatmulTo(rec, c, A, B, 1, 0))
					require.NoError(t, rec.Submit())
					want := ref.RoundTo(d, ref.Matmul(a, b, m, n, k, false, true))
					vktest.ExpectClose(t, "C", f.Download(c), want, n, ref.Tolerance(d).Product)
				})
			}
			require.NotZero(t, n, "CoopMat(%s) but no shape with fp32 accumulation", d)
		})
	}
}

// The subgroup-scope kernel takes a product first where its widest tile
// alone fills the device, unless the device offers the workgroup-scope
// kernel and the product is at least cm2DeepK deep; rank-sized outputs
// keep the narrow paths either way. The workgroup-scope tiles are invented here:
// planning never dispatches them.
func TestPlanPrefersWideCoopMat(t *testing.T) {
	const d = dtype.F16
	f := coopFixture(t, d) // its own dispatcher, changed here
	eng := f.eng
	eng.cm2Narrow = map[dtype.DType][]CM2Tile{}
	wide := eng.coop[d].tiles[0]
	groups := eng.targetGroups()
	kernelAt := func(m, n, k int) string {
		a, b := f.Poisoned(d, m, k), f.Poisoned(d, n, k)
		g := Gemm{C: f.Poisoned(d, m, n), A: Dense(a), B: Dense(b).T()}
		name, err := eng.KernelFor(g)
		require.NoError(t, err)
		return name
	}
	big := wide.BM * groups // m × BN columns give exactly the target count
	eng.cm2 = map[dtype.DType][]CM2Tile{}
	require.Equal(t, "coopmat", kernelAt(big, wide.BN, 32), "a wide output that fills the device, no workgroup scope")
	require.Equal(t, "narrow", kernelAt(big, 16, 32), "a rank-sized output")
	eng.cm2 = map[dtype.DType][]CM2Tile{d: cm2Tiles}
	require.Equal(t, "coopmat", kernelAt(big, wide.BN, 32), "a shallow one with workgroup scope offered")
	require.Equal(t, "cm2", kernelAt(big, wide.BN, cm2DeepK), "a deep one")
	require.Equal(t, "cm2", kernelAt(big/2, wide.BN, 32), "half the output: too few wide tiles")
	require.Equal(t, "narrow", kernelAt(big, 16, 32), "a rank-sized output")
}
