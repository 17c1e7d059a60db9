package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"

	"github.com/vklora/vklora/lora"
)

// reportName is the run's record in -out, beside the adapter (PEFT ignores
// other files in an adapter directory).
const reportName = "lorafit.json"

// report is lorafit.json: the settings, every step's loss and the rate,
// for scripts (scripts/gpu/lorafit_peft.py puts the rate beside PyTorch's).
type report struct {
	Version      string   `json:"vklora_version"`
	Device       string   `json:"device"`
	Model        string   `json:"model"`
	Preset       string   `json:"preset,omitempty"`
	Layers       []int    `json:"layers"`
	DType        string   `json:"dtype"`
	Tokens       int      `json:"tokens"`
	R            int      `json:"r,omitempty"` // a fresh adapter's
	Alpha        float64  `json:"alpha,omitempty"`
	InitAdapter  string   `json:"init_adapter,omitempty"`
	Targets      []string `json:"target_modules,omitempty"`
	TeacherRank  int      `json:"teacher_rank"`
	TeacherScale float64  `json:"teacher_scale"`
	LR           float64  `json:"lr"`
	Steps        int      `json:"steps"`
	Pool         int      `json:"pool"`
	Seed         uint64   `json:"seed"`
	Params       int      `json:"trainable_params"`
	Seconds      float64  `json:"seconds"`
	WarmSteps    int      `json:"warm_steps"`
	StepsPerSec  float64  `json:"steps_per_second"`
	// Medians over the timed steps: the whole step, its recording on the
	// host (allocations included), and its GPU time.
	StepWallMs   float64   `json:"step_wall_ms"`
	StepRecordMs float64   `json:"step_record_ms"`
	StepGPUMs    float64   `json:"step_gpu_ms"`
	PrepareSec   float64   `json:"prepare_seconds"` // building the step's kernels in parallel, before the first step
	FirstStepSec float64   `json:"first_step_seconds"`
	KernelsBuilt int       `json:"kernels_built"`
	BuildSec     float64   `json:"kernel_build_seconds"` // the driver's compile time of those kernels
	LossRatio    float64   `json:"loss_ratio"`           // loss of the first step / of the last
	Losses       []float64 `json:"loss"`
}

func writeReport(path string, c *fitConfig, res *result) error {
	r := report{Version: lora.Version, Device: res.Device, Model: c.model, Preset: c.preset, Layers: res.Layers,
		DType: res.DType.String(), Tokens: c.tokens, InitAdapter: c.initAdapter, TeacherRank: c.teacherRank,
		TeacherScale: c.teacherStd, LR: c.lr, Steps: c.steps, Pool: c.pool, Seed: c.seed, Params: res.Params,
		Seconds: res.Seconds, WarmSteps: warmSteps(c.steps), StepsPerSec: res.StepsPerSec, Losses: slices.Clone(res.Losses),
		StepWallMs: res.WallMs, StepRecordMs: res.RecordMs, StepGPUMs: res.GPUMs,
		PrepareSec: res.PrepareSec, FirstStepSec: res.FirstStepSec, KernelsBuilt: res.KernelsBuilt, BuildSec: res.BuildSec}
	if c.initAdapter == "" {
		r.R, r.Alpha, r.Targets = c.r, c.alpha, c.targets
	}
	if n := len(res.Losses); n > 0 {
		r.LossRatio = res.Losses[0] / res.Losses[n-1]
	}
	// JSON has no NaN or infinity: a diverged step records -1, its ratio 0.
	for i, l := range r.Losses {
		if math.IsNaN(l) || math.IsInf(l, 0) {
			r.Losses[i] = -1
		}
	}
	if math.IsNaN(r.LossRatio) || math.IsInf(r.LossRatio, 0) {
		r.LossRatio = 0
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
