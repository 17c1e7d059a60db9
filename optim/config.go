package optim

import (
	"fmt"
	"math"

	"github.com/vklora/vklora/kernels"
)

// ErrBadInput marks errors caused by the caller's arguments: a bad config,
// nil or released tensors, a gradient whose shape or dtype does not match
// its parameter, overlapping tensors, a state file that does not fit the
// parameters. It is kernels.ErrBadInput (and so lora.ErrBadInput). Nothing
// is recorded when a call returns it, so the recorder stays usable.
var ErrBadInput = kernels.ErrBadInput

// AdamWConfig is the hyperparameters of AdamW, named as torch.optim.AdamW
// names them. Every field is used as given: start from DefaultAdamWConfig
// (torch's defaults) and override fields, since a zero WeightDecay or Beta1
// is a legitimate choice. The all-zero config is refused as a likely
// mistake.
type AdamWConfig struct {
	// LR is the base learning rate (torch's lr), finite and ≥ 0. The rate of
	// step t is LR·Schedule(t−1).
	LR float64
	// Beta1 and Beta2 are torch's betas, each in [0, 1).
	Beta1, Beta2 float64
	// Eps is added to the denominator, finite and ≥ 0.
	Eps float64
	// WeightDecay is the decoupled weight decay (p ← p·(1 − lr·wd)), finite
	// and ≥ 0.
	WeightDecay float64
	// MaxGradNorm > 0 clips the gradients by their global L2 norm before the
	// update, as torch.nn.utils.clip_grad_norm_(params, MaxGradNorm) does
	// before optimizer.step(); 0 means no clipping. Finite and ≥ 0.
	MaxGradNorm float64
	// TrackGradNorm computes the global gradient norm (GradNorm) even when
	// MaxGradNorm is 0, for logging. Clipping always computes it.
	TrackGradNorm bool
	// Schedule gives the learning-rate multiplier of each step (nil:
	// Constant). See Schedule.
	Schedule Schedule
	// AMSGrad is not implemented: true is refused with ErrBadInput.
	AMSGrad bool
}

// DefaultAdamWConfig returns torch.optim.AdamW's defaults: lr 1e-3, betas
// (0.9, 0.999), eps 1e-8, weight_decay 1e-2; no clipping, a constant rate.
func DefaultAdamWConfig() AdamWConfig {
	return AdamWConfig{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 1e-2}
}

// check validates the config the way torch.optim.AdamW's constructor does,
// plus finiteness, and the fields torch has no counterpart for.
func (c AdamWConfig) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("optim: AdamWConfig: "+format+": %w", append(args, ErrBadInput)...)
	}
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case c.LR == 0 && c.Beta1 == 0 && c.Beta2 == 0 && c.Eps == 0 && c.WeightDecay == 0 && c.MaxGradNorm == 0:
		return bad("every field is zero (start from DefaultAdamWConfig() for torch's defaults)")
	case !finite(c.LR) || c.LR < 0:
		return bad("LR %v must be finite and ≥ 0", c.LR)
	case !(c.Beta1 >= 0 && c.Beta1 < 1):
		return bad("Beta1 %v must be in [0, 1)", c.Beta1)
	case !(c.Beta2 >= 0 && c.Beta2 < 1):
		return bad("Beta2 %v must be in [0, 1)", c.Beta2)
	case !finite(c.Eps) || c.Eps < 0:
		return bad("Eps %v must be finite and ≥ 0", c.Eps)
	case !finite(c.WeightDecay) || c.WeightDecay < 0:
		return bad("WeightDecay %v must be finite and ≥ 0", c.WeightDecay)
	case !finite(c.MaxGradNorm) || c.MaxGradNorm < 0:
		return bad("MaxGradNorm %v must be finite and ≥ 0 (0: no clipping)", c.MaxGradNorm)
	case c.AMSGrad:
		return bad("AMSGrad is not implemented")
	}
	return nil
}

// Schedule maps the number of optimizer steps already taken, k = t−1 for
// step t (1-based), to the multiplier of AdamWConfig.LR for step t. It is
// called once per Step, on the host, before anything is recorded; it must
// return a finite value ≥ 0 (else Step fails with ErrBadInput).
//
// This is torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=schedule)
// with scheduler.step() called after each optimizer.step(): LambdaLR sets
// lr = base_lr·lr_lambda(last_epoch), and last_epoch is the number of
// scheduler steps taken, so the t-th optimizer step runs at
// base_lr·lr_lambda(t−1). The multiplication is done in float64, as in
// Python.
type Schedule func(step int) float64

// Constant is the schedule of a fixed rate: every step runs at LR.
func Constant() Schedule { return func(int) float64 { return 1 } }

// LinearWarmupCosine is transformers'
// get_cosine_with_min_lr_schedule_with_warmup(optimizer, warmup, total,
// num_cycles=0.5, min_lr_rate=minRatio) (minRatio 0 is
// get_cosine_schedule_with_warmup), as a Schedule:
//
//	k < warmup:  k / max(1, warmup)
//	otherwise:   progress = (k − warmup) / max(1, total − warmup)
//	             f = 0.5·(1 + cos(π·progress))
//	             max(0, f·(1 − minRatio) + minRatio)
//
// in float64, where k is the number of steps already taken (see Schedule).
// So the first step runs at rate 0 when warmup > 0, the rate reaches LR at
// step warmup+1, and falls to minRatio·LR at step total+1; past total the
// cosine rises again, as in transformers (train for total steps). A
// non-finite minRatio makes every step fail.
func LinearWarmupCosine(warmup, total int, minRatio float64) Schedule {
	return func(k int) float64 {
		if k < warmup {
			return float64(k) / float64(max(1, warmup))
		}
		progress := float64(k-warmup) / float64(max(1, total-warmup))
		f := 0.5 * (1.0 + math.Cos(math.Pi*0.5*2.0*progress))
		f = f*(1-minRatio) + minRatio
		if math.IsNaN(f) {
			return f
		}
		return max(0, f)
	}
}
