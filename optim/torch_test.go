package optim

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/safetensors"
	"github.com/vklora/vklora/vk"
	"github.com/vklora/vklora/vk/vktest"
)

// torchVectors is written by scripts/gpu/torch_adamw.py (real
// torch.optim.AdamW, clip_grad_norm_ and LambdaLR); VKLORA_TORCH_ADAMW
// names another file.
const torchVectors = "../testdata/optim/adamw_torch.safetensors"

// torchCase is a case's metadata (case.<name>).
type torchCase struct {
	DType          string    `json:"dtype"`
	Shapes         [][]int   `json:"shapes"`
	LR             float64   `json:"lr"`
	Betas          []float64 `json:"betas"`
	Eps            float64   `json:"eps"`
	WeightDecay    float64   `json:"weight_decay"`
	MaxNorm        float64   `json:"max_norm"`
	Warmup         *int      `json:"warmup"`
	Total          int       `json:"total"`
	MinRatio       float64   `json:"min_ratio"`
	ScheduleSource string    `json:"schedule_source"`
}

// TestTorchVectors runs every case of the torch vectors and compares the
// final parameters, moments, master copies, per-step norms and rates with
// torch's. It skips only when the file is absent; a file that exists and
// disagrees fails.
func TestTorchVectors(t *testing.T) {
	path := torchVectors
	if p := os.Getenv("VKLORA_TORCH_ADAMW"); p != "" {
		path = p
	}
	sf, err := safetensors.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s is absent: generate it with `python3 scripts/gpu/torch_adamw.py` where PyTorch is installed (docs/OPTIM.md)", path)
	}
	require.NoError(t, err)
	require.Equal(t, "vklora.optim.torch_adamw/1", sf.Metadata["format"])
	t.Logf("%s: torch %s on %s", path, sf.Metadata["torch"], sf.Metadata["device"])
	var names []string
	require.NoError(t, json.Unmarshal([]byte(sf.Metadata["cases"]), &names))
	require.NotEmpty(t, names)
	base := vktest.NewFixture(t)
	for _, name := range names {
		t.Run(name, func(t *testing.T) { torchCaseRun(base.In(t), sf, name) })
	}
}

func torchCaseRun(f vktest.Fixture, sf *safetensors.File, name string) {
	t := f.T
	var c torchCase
	require.NoError(t, json.Unmarshal([]byte(sf.Metadata["case."+name]), &c), "case metadata")
	d, err := dtype.Parse(c.DType)
	require.NoError(t, err)
	steps := 0
	fmt.Sscan(sf.Metadata["steps"], &steps)
	require.Positive(t, steps)
	cfg := AdamWConfig{LR: c.LR, Beta1: c.Betas[0], Beta2: c.Betas[1], Eps: c.Eps, WeightDecay: c.WeightDecay,
		MaxGradNorm: c.MaxNorm, TrackGradNorm: true}
	if c.Warmup != nil {
		cfg.Schedule = LinearWarmupCosine(*c.Warmup, c.Total, c.MinRatio)
	}
	get := func(key string, shape []int) []float32 {
		xs, sh, err := sf.Float32(key)
		require.NoError(t, err, key)
		require.Equal(t, shape, sh, key)
		return xs
	}
	n := len(c.Shapes)
	var ps, gs []*vk.Tensor
	var grads [][][]float32 = make([][][]float32, steps)
	for i, shape := range c.Shapes {
		pre := fmt.Sprintf("%s/p%d/", name, i)
		ps = append(ps, f.Upload(d, ref.FromFloat32(get(pre+"init", shape)), shape...))
		gs = append(gs, f.Poisoned(d, shape...))
		all := get(pre+"grads", append([]int{steps}, shape...))
		k := numel(shape)
		for s := 0; s < steps; s++ {
			grads[s] = append(grads[s], all[s*k:(s+1)*k])
		}
	}
	o := newOpt(t, f.Dev, params(ps), cfg)
	lrsRaw := sf.Tensors[name+"/lrs"]
	require.Len(t, lrsRaw.Data, 8*steps, "lrs")
	wantNorms := get(name+"/norms", []int{steps})
	rec := f.Recorder()
	var norms []float32
	for s := 0; s < steps; s++ {
		for i := range gs {
			require.NoError(t, gs[i].Upload(grads[s][i]))
		}
		require.NoError(t, o.Step(rec, gs))
		require.NoError(t, rec.Submit())
		wantLR := math.Float64frombits(binary.LittleEndian.Uint64(lrsRaw.Data[8*s:]))
		// Go's math.Cos and glibc's cos may differ by an ulp, which 1 + cos
		// amplifies near the end of a cosine decay to zero (2e-13 at step 100).
		if got := o.LastLR(); math.Abs(got-wantLR) > 1e-10*math.Abs(wantLR) {
			t.Errorf("step %d: lr %v, torch %v", s+1, got, wantLR)
		}
		nv, err := o.GradNorm()
		require.NoError(t, err)
		norms = append(norms, nv)
	}
	tol := ref.Tolerance(dtype.F32).Conformance
	ck := &checker{t: t, worst: map[string]float64{}} // torch's order of sums differs: no bit checks
	st, err := o.State()
	require.NoError(t, err)
	var final, m, v, wantFinal, wantM, wantV [][]float32
	for i, shape := range c.Shapes {
		pre := fmt.Sprintf("%s/p%d/", name, i)
		if st.Params[i].Master != nil {
			final = append(final, st.Params[i].Master)
		} else {
			x, err := ps[i].Float32()
			require.NoError(t, err)
			final = append(final, x)
		}
		m, v = append(m, st.Params[i].ExpAvg), append(v, st.Params[i].ExpAvgSq)
		wantFinal = append(wantFinal, get(pre+"final", shape))
		wantM, wantV = append(wantM, get(pre+"exp_avg", shape)), append(wantV, get(pre+"exp_avg_sq", shape))
	}
	ck.check("final params (f32 master)", final, wantFinal, tol)
	ck.check("exp_avg", m, wantM, tol)
	ck.check("exp_avg_sq", v, wantV, tol)
	ck.check("grad norms", [][]float32{norms}, [][]float32{wantNorms}, tol)
	if d != dtype.F32 {
		got := download(t, ps)
		var want [][]float32
		for i, shape := range c.Shapes {
			want = append(want, get(fmt.Sprintf("%s/p%d/final_param", name, i), shape))
		}
		ck.check("final params "+d.String(), got, want, ref.Tolerance(d).Conformance)
	}
	require.Equal(t, n, len(st.Params))
}
