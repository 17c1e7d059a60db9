package optim

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

func TestConfigErrors(t *testing.T) {
	f := vktest.NewFixture(t)
	ts := upload(t, f.Dev, []dtype.DType{dtype.F32}, [][]int{{3}}, [][]float32{{1, 2, 3}})
	for _, c := range []struct {
		edit func(*AdamWConfig)
		want string
	}{
		{func(c *AdamWConfig) { *c = AdamWConfig{} }, "every field is zero"},
		{func(c *AdamWConfig) { c.LR = -1 }, "LR -1"},
		{func(c *AdamWConfig) { c.LR = math.NaN() }, "LR NaN"},
		{func(c *AdamWConfig) { c.LR = math.Inf(1) }, "LR +Inf"},
		{func(c *AdamWConfig) { c.Beta1 = 1 }, "Beta1 1 must be in [0, 1)"},
		{func(c *AdamWConfig) { c.Beta1 = -0.1 }, "Beta1 -0.1"},
		{func(c *AdamWConfig) { c.Beta2 = 1 }, "Beta2 1 must be in [0, 1)"},
		{func(c *AdamWConfig) { c.Beta2 = math.NaN() }, "Beta2 NaN"},
		{func(c *AdamWConfig) { c.Eps = -1e-8 }, "Eps -1e-08"},
		{func(c *AdamWConfig) { c.WeightDecay = -0.1 }, "WeightDecay -0.1"},
		{func(c *AdamWConfig) { c.WeightDecay = math.Inf(1) }, "WeightDecay +Inf"},
		{func(c *AdamWConfig) { c.MaxGradNorm = -1 }, "MaxGradNorm -1"},
		{func(c *AdamWConfig) { c.AMSGrad = true }, "AMSGrad is not implemented"},
	} {
		cfg := DefaultAdamWConfig()
		c.edit(&cfg)
		o, err := NewAdamW(f.Dev, params(ts), cfg)
		require.Nil(t, o)
		require.ErrorIs(t, err, ErrBadInput, c.want)
		require.Contains(t, err.Error(), c.want)
	}
	// Zero is a legitimate value of each field on its own.
	o := newOpt(t, f.Dev, params(ts), AdamWConfig{LR: 1e-3})
	require.Equal(t, 0.0, o.Config().Beta1)
}

func TestParamErrors(t *testing.T) {
	f := vktest.NewFixture(t)
	a := f.Upload(dtype.F32, f.Random(dtype.F32, 12, 1), 3, 4)
	b := f.Upload(dtype.BF16, f.Random(dtype.BF16, 5, 1), 5)
	view, err := a.View(2, 2)
	require.NoError(t, err)
	u8, err := f.Dev.NewTensor(dtype.U8, 4)
	require.NoError(t, err)
	f.Keep(u8)
	dead, err := f.Dev.NewTensor(dtype.F32, 2)
	require.NoError(t, err)
	dead.Release()
	cfg := DefaultAdamWConfig()
	for _, c := range []struct {
		ps   []Param
		want string
	}{
		{nil, "the parameter list is empty"},
		{[]Param{{Name: "", Tensor: a}}, `param 0 f32[3 4] has no name`},
		{[]Param{{Name: "a", Tensor: a}, {Name: "a", Tensor: b}}, `param name "a" is used twice`},
		{[]Param{{Name: "a", Tensor: nil}}, `param "a" is nil or released`},
		{[]Param{{Name: "a", Tensor: dead}}, `param "a" is nil or released`},
		{[]Param{{Name: "q", Tensor: u8}}, `param "q" u8[4] must be f32, f16 or bf16`},
		{[]Param{{Name: "a", Tensor: a}, {Name: "v", Tensor: view}}, `params "a" f32[3 4] and "v" f32[2 2] share memory`},
	} {
		o, err := NewAdamW(f.Dev, c.ps, cfg)
		require.Nil(t, o)
		require.ErrorIs(t, err, ErrBadInput, c.want)
		require.Contains(t, err.Error(), c.want)
		acc, err := NewGradAccumulator(f.Dev, c.ps)
		require.Nil(t, acc)
		require.ErrorIs(t, err, ErrBadInput, c.want)
	}
	// A failure after allocating (a bf16 param of another device: its
	// master copy cannot be filled) frees what was allocated; the shared
	// device's leak check at the test's end sees it.
	other, err := vk.Open(vk.Options{})
	require.NoError(t, err)
	defer other.Close()
	foreign, err := other.TensorFrom(dtype.BF16, []float32{1, 2}, 2)
	require.NoError(t, err)
	defer foreign.Release()
	o, err := NewAdamW(f.Dev, []Param{{Name: "a", Tensor: a}, {Name: "x", Tensor: foreign}}, defaults(func(c *AdamWConfig) { c.MaxGradNorm = 1 }))
	require.Nil(t, o)
	require.Error(t, err)
	require.Contains(t, err.Error(), `master copy of "x"`)

	_, err = NewAdamW(nil, []Param{{Name: "a", Tensor: a}}, cfg)
	require.ErrorIs(t, err, ErrBadInput)
	_, err = NewGradAccumulator(nil, []Param{{Name: "a", Tensor: a}})
	require.ErrorIs(t, err, ErrBadInput)
}

func TestStepErrors(t *testing.T) {
	f := vktest.NewFixture(t)
	a := f.Upload(dtype.F32, f.Random(dtype.F32, 12, 1), 3, 4)
	b := f.Upload(dtype.BF16, f.Random(dtype.BF16, 5, 1), 5)
	ga := f.Upload(dtype.F32, f.Random(dtype.F32, 12, 1), 3, 4)
	gb := f.Upload(dtype.BF16, f.Random(dtype.BF16, 5, 1), 5)
	gt := f.Upload(dtype.F32, f.Random(dtype.F32, 12, 1), 4, 3)
	gh := f.Upload(dtype.F16, f.Random(dtype.F16, 5, 1), 5)
	dead, err := f.Dev.NewTensor(dtype.F32, 3, 4)
	require.NoError(t, err)
	dead.Release()
	ps := []Param{{Name: "a", Tensor: a}, {Name: "b", Tensor: b}}
	o := newOpt(t, f.Dev, ps, defaults(func(c *AdamWConfig) { c.MaxGradNorm = 1 }))
	rec := f.Recorder()
	for _, c := range []struct {
		grads []*vk.Tensor
		want  string
	}{
		{[]*vk.Tensor{ga}, "1 gradients for 2 params"},
		{[]*vk.Tensor{nil, gb}, `gradient of "a" f32[3 4] is nil or released`},
		{[]*vk.Tensor{dead, gb}, `gradient of "a" f32[3 4] is nil or released`},
		{[]*vk.Tensor{gt, gb}, `gradient f32[4 3] of "a" f32[3 4] must have the param's shape`},
		{[]*vk.Tensor{ga, gh}, `gradient f16[5] of "b" bf16[5] must be bf16 or f32`},
		{[]*vk.Tensor{a, gb}, `gradient f32[3 4] of "a" shares memory with param "a"`},
		{[]*vk.Tensor{ga, b}, `gradient bf16[5] of "b" shares memory with param "b"`},
	} {
		err := o.Step(rec, c.grads)
		require.ErrorIs(t, err, ErrBadInput, c.want)
		require.Contains(t, err.Error(), c.want)
	}
	require.ErrorIs(t, o.Step(nil, []*vk.Tensor{ga, gb}), ErrBadInput)
	require.Equal(t, 0, rec.Dispatches(), "a refused step recorded something")
	require.Equal(t, 0, o.Steps())

	// Schedules that fail, and one that panics: errors, not panics.
	for _, c := range []struct {
		s    Schedule
		want string
	}{
		{func(int) float64 { return math.NaN() }, "the schedule gave NaN at step 1"},
		{func(int) float64 { return -1 }, "the schedule gave -1 at step 1"},
		{func(int) float64 { panic("boom") }, "the schedule panicked at step 1: boom"},
		{func(int) float64 { return math.MaxFloat64 }, "overflows"},
	} {
		cfg := defaults(func(cf *AdamWConfig) { cf.Schedule, cf.LR = c.s, 10 })
		so := newOpt(t, f.Dev, ps, cfg)
		err := so.Step(rec, []*vk.Tensor{ga, gb})
		require.ErrorIs(t, err, ErrBadInput, c.want)
		require.Contains(t, err.Error(), c.want)
	}
	require.Equal(t, 0, rec.Dispatches())

	// The recorder is still usable; a good step goes through.
	require.NoError(t, o.Step(rec, []*vk.Tensor{ga, gb}))
	require.NoError(t, rec.Submit())
	require.Equal(t, 1, o.Steps())
	// A gradient in f32 for the bf16 parameter is fine.
	require.NoError(t, o.Step(rec, []*vk.Tensor{ga, f.Upload(dtype.F32, f.Random(dtype.F32, 5, 1), 5)}))
	require.NoError(t, rec.Submit())

	// GradNorm needs a norm.
	plain := newOpt(t, f.Dev, ps, DefaultAdamWConfig())
	_, err = plain.GradNorm()
	require.ErrorIs(t, err, ErrBadInput)
	require.Contains(t, err.Error(), "set MaxGradNorm or TrackGradNorm")

	// Released: errors wrapping vk.ErrReleased; Release is idempotent.
	o.Release()
	o.Release()
	require.NoError(t, o.Close())
	require.ErrorIs(t, o.Step(rec, []*vk.Tensor{ga, gb}), vk.ErrReleased)
	_, err = o.State()
	require.ErrorIs(t, err, vk.ErrReleased)
	_, err = o.GradNorm()
	require.ErrorIs(t, err, vk.ErrReleased)
	require.ErrorIs(t, o.LoadState("x"), vk.ErrReleased)
	var nilOpt *AdamW
	require.ErrorIs(t, nilOpt.Step(rec, nil), vk.ErrReleased)
	nilOpt.Release()
	// The parameters survive the optimizer.
	require.False(t, a.Released())
}

func TestAccumulatorErrors(t *testing.T) {
	f := vktest.NewFixture(t)
	a := f.Upload(dtype.BF16, f.Random(dtype.BF16, 12, 1), 3, 4)
	ga := f.Upload(dtype.F16, f.Random(dtype.F16, 12, 1), 3, 4)
	gt := f.Upload(dtype.F32, f.Random(dtype.F32, 12, 1), 4, 3)
	acc, err := NewGradAccumulator(f.Dev, []Param{{Name: "a", Tensor: a}})
	require.NoError(t, err)
	rec := f.Recorder()
	for _, c := range []struct {
		grads []*vk.Tensor
		scale float32
		want  string
	}{
		{[]*vk.Tensor{ga}, float32(math.NaN()), "scale NaN is not finite"},
		{[]*vk.Tensor{}, 1, "0 gradients for 1 params"},
		{[]*vk.Tensor{nil}, 1, `gradient of "a" f32[3 4] is nil or released`},
		{[]*vk.Tensor{gt}, 1, `gradient f32[4 3] of "a" must have shape [3 4]`},
		{[]*vk.Tensor{acc.Grads()[0]}, 1, `shares memory with the accumulator of "a"`},
	} {
		err := acc.Add(rec, c.grads, c.scale)
		require.ErrorIs(t, err, ErrBadInput, c.want)
		require.Contains(t, err.Error(), c.want)
	}
	require.ErrorIs(t, acc.Add(nil, []*vk.Tensor{ga}, 1), ErrBadInput)
	require.ErrorIs(t, acc.ZeroGrad(nil), ErrBadInput)
	require.Equal(t, 0, rec.Dispatches())
	// f16 gradients into the f32 accumulator of a bf16 parameter: exact.
	require.NoError(t, acc.Add(rec, []*vk.Tensor{ga}, 1))
	require.NoError(t, rec.Submit())
	want, err := ga.Float32()
	require.NoError(t, err)
	got, err := acc.Grads()[0].Float32()
	require.NoError(t, err)
	require.Equal(t, want, got)
	acc.Release()
	acc.Release()
	require.ErrorIs(t, acc.Add(rec, []*vk.Tensor{ga}, 1), vk.ErrReleased)
	require.ErrorIs(t, acc.ZeroGrad(rec), vk.ErrReleased)
}
