package optim

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/safetensors"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// TestSaveLoadResumes: 50 steps, SaveState, a new optimizer over new
// parameter tensors (the f32 one restored from a model checkpoint, the
// 16-bit ones garbage: LoadState restores them from their masters),
// LoadState, 50 more steps: bit for bit the uninterrupted 100 steps.
func TestSaveLoadResumes(t *testing.T) {
	f := vktest.NewFixture(t)
	dts := []dtype.DType{dtype.F32, dtype.BF16, dtype.F16}
	cfg := defaults(func(c *AdamWConfig) {
		c.LR, c.WeightDecay, c.MaxGradNorm, c.Schedule = 1e-2, 0.1, 1, LinearWarmupCosine(10, 100, 0.1)
	})
	pr := newProblem(f.RNG, dts, odd, 100, 1, false)
	rec := f.Recorder()

	psA := upload(t, f.Dev, dts, odd, pr.init)
	gA := upload(t, f.Dev, dts, odd, pr.grads[0])
	oA := newOpt(t, f.Dev, params(psA), cfg)
	normsA := stepAll(t, rec, oA, gA, pr.grads)

	psB := upload(t, f.Dev, dts, odd, pr.init)
	oB := newOpt(t, f.Dev, params(psB), cfg)
	normsB := stepAll(t, rec, oB, gA, pr.grads[:50])
	path := filepath.Join(t.TempDir(), "adamw.safetensors")
	require.NoError(t, oB.SaveState(path))
	checkpoint := download(t, psB)

	garbage := [][]float32{checkpoint[0], make([]float32, numel(odd[1])), make([]float32, numel(odd[2]))}
	for i := range garbage[1] {
		garbage[1][i] = 7
	}
	psC := upload(t, f.Dev, dts, odd, garbage)
	oC := newOpt(t, f.Dev, params(psC), cfg)
	require.NoError(t, oC.LoadState(path))
	require.Equal(t, 50, oC.Steps())
	normsB = append(normsB, stepAll(t, rec, oC, gA, pr.grads[50:])...)

	f.RequireSameTensors("resumed params", psC, psA)
	stA, err := oA.State()
	require.NoError(t, err)
	stC, err := oC.State()
	require.NoError(t, err)
	require.Equal(t, stA, stC, "resumed state")
	require.Equal(t, normsA, normsB, "grad norms")

	// The file's layout.
	sf, err := safetensors.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "50", sf.Metadata["step"])
	require.Equal(t, stateFormat, sf.Metadata["format"])
	require.Equal(t, "bf16", sf.Metadata["dtype.layer1.w"])
	require.Equal(t, []string{"layer0.w.exp_avg", "layer0.w.exp_avg_sq",
		"layer1.w.exp_avg", "layer1.w.exp_avg_sq", "layer1.w.master",
		"layer2.w.exp_avg", "layer2.w.exp_avg_sq", "layer2.w.master"}, sf.Names())
}

// TestLoadStateRefuses files that do not fit the optimizer, naming the
// parameter and shapes, and leaves the optimizer as it was.
func TestLoadStateRefuses(t *testing.T) {
	f := vktest.NewFixture(t)
	dir := t.TempDir()
	save := func(name string, dts []dtype.DType, shapes [][]int, names ...string) string {
		ts := upload(t, f.Dev, dts, shapes, newProblem(f.RNG, dts, shapes, 0, 1, false).init)
		ps := params(ts)
		for i := range names {
			ps[i].Name = names[i]
		}
		o := newOpt(t, f.Dev, ps, DefaultAdamWConfig())
		p := filepath.Join(dir, name)
		require.NoError(t, o.SaveState(p))
		o.Release()
		return p
	}
	good := save("good", []dtype.DType{dtype.F32, dtype.BF16}, [][]int{{7, 13}, {5}})
	transposed := save("transposed", []dtype.DType{dtype.F32, dtype.BF16}, [][]int{{13, 7}, {5}})
	asF32 := save("asf32", []dtype.DType{dtype.F32, dtype.F32}, [][]int{{7, 13}, {5}})
	renamed := save("renamed", []dtype.DType{dtype.F32, dtype.BF16}, [][]int{{7, 13}, {5}}, "layer0.w", "other")
	extra := save("extra", []dtype.DType{dtype.F32, dtype.BF16, dtype.F32}, [][]int{{7, 13}, {5}, {2}})
	foreign := filepath.Join(dir, "foreign")
	sf := safetensors.New()
	require.NoError(t, sf.PutFloat32("layer0.w.exp_avg", dtype.F32, []int{1}, []float32{1}))
	require.NoError(t, safetensors.WriteFile(foreign, sf))

	ts := upload(t, f.Dev, []dtype.DType{dtype.F32, dtype.BF16}, [][]int{{7, 13}, {5}},
		newProblem(f.RNG, []dtype.DType{dtype.F32, dtype.BF16}, [][]int{{7, 13}, {5}}, 0, 1, false).init)
	o := newOpt(t, f.Dev, params(ts), DefaultAdamWConfig())
	require.NoError(t, o.LoadState(good))
	for _, c := range []struct{ path, want string }{
		{transposed, `"layer0.w.exp_avg" is F32[13 7], want F32[7 13]`},
		{asF32, `param "layer1.w" was saved as "f32", the optimizer's is bf16[5]`},
		{renamed, `the file has no state for param "layer1.w" bf16[5]`},
		{extra, `tensor "layer2.w.exp_avg" belongs to no param`},
		{foreign, `format ""`},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		err := o.LoadState(c.path)
		require.Error(t, err, c.path)
		require.Contains(t, err.Error(), c.want)
		if !strings.Contains(c.want, "no such file") {
			require.ErrorIs(t, err, ErrBadInput)
		}
	}
	// SetState's own checks.
	st, err := o.State()
	require.NoError(t, err)
	st.Params[1].Master = nil
	require.ErrorIs(t, o.SetState(st), ErrBadInput)
	st.Params = st.Params[:1]
	require.ErrorIs(t, o.SetState(st), ErrBadInput)
	require.ErrorIs(t, o.SetState(nil), ErrBadInput)
	require.ErrorIs(t, o.SetState(&State{Step: -1}), ErrBadInput)
	require.Equal(t, 0, o.Steps())
}

// TestStatePending: the state cannot be read while a recorded step is
// unsubmitted.
func TestStatePending(t *testing.T) {
	f := vktest.NewFixture(t)
	ts := upload(t, f.Dev, []dtype.DType{dtype.F32}, [][]int{{3}}, [][]float32{{1, 2, 3}})
	g := upload(t, f.Dev, []dtype.DType{dtype.F32}, [][]int{{3}}, [][]float32{{1, 2, 3}})
	o := newOpt(t, f.Dev, params(ts), defaults(func(c *AdamWConfig) { c.TrackGradNorm = true }))
	rec := f.Recorder()
	_, err := o.GradNorm()
	require.ErrorIs(t, err, ErrBadInput) // no step yet
	require.NoError(t, o.Step(rec, g))
	_, err = o.State()
	require.True(t, errors.Is(err, vk.ErrPending), "State before Submit: %v", err)
	_, err = o.GradNorm()
	require.True(t, errors.Is(err, vk.ErrPending), "GradNorm before Submit: %v", err)
	require.NoError(t, rec.Submit())
	n, err := o.GradNorm()
	require.NoError(t, err)
	require.InDelta(t, 3.7416575, n, 1e-6)
}
