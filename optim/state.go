package optim

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/safetensors"
)

// State is a host copy of an AdamW's state: torch's state["step"] and, per
// parameter, exp_avg, exp_avg_sq and (16-bit parameters only) the f32
// master copy. f32 parameters are their own master and are not part of the
// state: save them with the model.
type State struct {
	Step   int
	Params []ParamState // in parameter order
}

// ParamState is one parameter's part of a State.
type ParamState struct {
	Name     string
	Shape    []int
	DType    dtype.DType // the parameter's dtype
	ExpAvg   []float32
	ExpAvgSq []float32
	Master   []float32 // nil for an f32 parameter
}

// stateFormat names the layout of SaveState's files (metadata "format").
const stateFormat = "vklora.optim.AdamW/1"

// State downloads the optimizer's state. It fails with vk.ErrPending while
// a recording holding a step is unsubmitted.
func (o *AdamW) State() (st *State, err error) {
	defer func() { recoverTo(&err, "State", recover()) }()
	if err := o.alive("State"); err != nil {
		return nil, err
	}
	st = &State{Step: o.step}
	for _, s := range o.ps {
		ps := ParamState{Name: s.name, Shape: s.p.Shape(), DType: s.p.DType()}
		if ps.ExpAvg, err = s.m.Float32(); err != nil {
			return nil, fmt.Errorf("optim: State: exp_avg of %q: %w", s.name, err)
		}
		if ps.ExpAvgSq, err = s.v.Float32(); err != nil {
			return nil, fmt.Errorf("optim: State: exp_avg_sq of %q: %w", s.name, err)
		}
		if s.master != nil {
			if ps.Master, err = s.master.Float32(); err != nil {
				return nil, fmt.Errorf("optim: State: master copy of %q: %w", s.name, err)
			}
		}
		st.Params = append(st.Params, ps)
	}
	return st, nil
}

// SetState uploads st, which must describe exactly this optimizer's
// parameters (names, order, shapes, dtypes). A 16-bit parameter is set to
// its master copy rounded to nearest even, so that parameter and master
// agree; f32 parameters are left alone. The step count becomes st.Step, so
// the bias corrections and the schedule continue where st left off.
// Mismatches wrap ErrBadInput and change nothing.
func (o *AdamW) SetState(st *State) (err error) {
	defer func() { recoverTo(&err, "SetState", recover()) }()
	if err := o.alive("SetState"); err != nil {
		return err
	}
	if err := o.checkState(st); err != nil {
		return err
	}
	for i, s := range o.ps {
		ps := st.Params[i]
		if err := s.m.Upload(ps.ExpAvg); err != nil {
			return fmt.Errorf("optim: SetState: exp_avg of %q: %w", s.name, err)
		}
		if err := s.v.Upload(ps.ExpAvgSq); err != nil {
			return fmt.Errorf("optim: SetState: exp_avg_sq of %q: %w", s.name, err)
		}
		if s.master != nil {
			if err := s.master.Upload(ps.Master); err != nil {
				return fmt.Errorf("optim: SetState: master copy of %q: %w", s.name, err)
			}
			if err := s.p.Upload(ps.Master); err != nil { // rounds to nearest even
				return fmt.Errorf("optim: SetState: param %q from its master copy: %w", s.name, err)
			}
		}
	}
	o.step, o.normStep, o.lastLR = st.Step, 0, 0
	return nil
}

// checkState reports how st differs from this optimizer's parameters.
func (o *AdamW) checkState(st *State) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("optim: SetState: "+format+": %w", append(args, ErrBadInput)...)
	}
	if st == nil {
		return bad("state is nil")
	}
	if st.Step < 0 {
		return bad("step %d is negative", st.Step)
	}
	if len(st.Params) != len(o.ps) {
		return bad("state has %d params, the optimizer %d", len(st.Params), len(o.ps))
	}
	for i, s := range o.ps {
		ps := st.Params[i]
		n := s.p.Numel()
		switch {
		case ps.Name != s.name:
			return bad("param %d is %q in the state, %q in the optimizer", i, ps.Name, s.name)
		case !sameShape(ps.Shape, s.p.Shape()):
			return bad("param %q has shape %v in the state, the optimizer's is %s", s.name, ps.Shape, s.p)
		case ps.DType != s.p.DType():
			return bad("param %q was %s in the state, the optimizer's is %s", s.name, ps.DType, s.p)
		case len(ps.ExpAvg) != n || len(ps.ExpAvgSq) != n:
			return bad("param %q %s: exp_avg has %d values and exp_avg_sq %d, want %d", s.name, s.p, len(ps.ExpAvg), len(ps.ExpAvgSq), n)
		case s.master != nil && len(ps.Master) != n:
			return bad("param %q %s: master copy has %d values, want %d", s.name, s.p, len(ps.Master), n)
		case s.master == nil && ps.Master != nil:
			return bad("param %q %s is f32 but the state has a master copy", s.name, s.p)
		}
	}
	return nil
}

// Tensor names in a state file: <param>.exp_avg, <param>.exp_avg_sq and
// <param>.master (16-bit parameters), all F32 of the parameter's shape.
const (
	sfxExpAvg   = ".exp_avg"
	sfxExpAvgSq = ".exp_avg_sq"
	sfxMaster   = ".master"
)

// SaveState writes the state (State) to a safetensors file at path: the
// tensors <name>.exp_avg, <name>.exp_avg_sq and, for 16-bit parameters,
// <name>.master (F32, the parameter's shape), and metadata "format"
// (vklora.optim.AdamW/1), "step", "dtype.<name>" per parameter and the
// hyperparameters (informational: LoadState keeps the optimizer's own).
func (o *AdamW) SaveState(path string) (err error) {
	defer func() { recoverTo(&err, "SaveState", recover()) }()
	st, err := o.State()
	if err != nil {
		return err
	}
	f := safetensors.New()
	f.Metadata["format"] = stateFormat
	f.Metadata["step"] = strconv.Itoa(st.Step)
	c := o.cfg
	for k, v := range map[string]float64{"lr": c.LR, "beta1": c.Beta1, "beta2": c.Beta2, "eps": c.Eps,
		"weight_decay": c.WeightDecay, "max_grad_norm": c.MaxGradNorm} {
		f.Metadata[k] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	for _, ps := range st.Params {
		f.Metadata["dtype."+ps.Name] = ps.DType.String()
		put := func(sfx string, xs []float32) error {
			return f.Put(ps.Name+sfx, "F32", append([]int(nil), ps.Shape...), f32Bytes(xs))
		}
		if err := put(sfxExpAvg, ps.ExpAvg); err != nil {
			return fmt.Errorf("optim: SaveState: %w", err)
		}
		if err := put(sfxExpAvgSq, ps.ExpAvgSq); err != nil {
			return fmt.Errorf("optim: SaveState: %w", err)
		}
		if ps.Master != nil {
			if err := put(sfxMaster, ps.Master); err != nil {
				return fmt.Errorf("optim: SaveState: %w", err)
			}
		}
	}
	if err := safetensors.WriteFile(path, f); err != nil {
		return fmt.Errorf("optim: SaveState: %w", err)
	}
	return nil
}

// LoadState reads a file written by SaveState and sets the state from it
// (SetState). Every parameter must have its tensors, F32 of its shape, a
// master copy exactly when it is 16-bit, and the dtype it was saved with;
// tensors for no parameter are refused too. Mismatches wrap ErrBadInput,
// name the parameter and the shapes, and change nothing.
func (o *AdamW) LoadState(path string) (err error) {
	defer func() { recoverTo(&err, "LoadState", recover()) }()
	if err := o.alive("LoadState"); err != nil {
		return err
	}
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return fmt.Errorf("optim: LoadState: %w", err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("optim: LoadState %s: "+format+": %w", append(append([]any{path}, args...), ErrBadInput)...)
	}
	if got := f.Metadata["format"]; got != stateFormat {
		return bad("format %q, want %q", got, stateFormat)
	}
	step, err := strconv.Atoi(f.Metadata["step"])
	if err != nil || step < 0 {
		return bad("step %q is not a count", f.Metadata["step"])
	}
	st := &State{Step: step}
	used := map[string]bool{}
	for _, s := range o.ps {
		ps := ParamState{Name: s.name, Shape: s.p.Shape(), DType: s.p.DType()}
		saved, ok := f.Metadata["dtype."+s.name]
		switch {
		case !ok:
			return bad("the file has no state for param %q %s", s.name, s.p)
		case saved != s.p.DType().String():
			return bad("param %q was saved as %q, the optimizer's is %s", s.name, saved, s.p)
		}
		get := func(sfx string) ([]float32, error) {
			name := s.name + sfx
			t, ok := f.Tensors[name]
			if !ok {
				return nil, bad("no tensor %q for param %q %s", name, s.name, s.p)
			}
			used[name] = true
			if t.DType != "F32" || !sameShape(t.Shape, s.p.Shape()) {
				return nil, bad("tensor %q is %s%v, want F32%v for param %q %s", name, t.DType, t.Shape, s.p.Shape(), s.name, s.p)
			}
			xs, _, err := f.Float32(name)
			return xs, err
		}
		if ps.ExpAvg, err = get(sfxExpAvg); err != nil {
			return err
		}
		if ps.ExpAvgSq, err = get(sfxExpAvgSq); err != nil {
			return err
		}
		if s.master != nil {
			if ps.Master, err = get(sfxMaster); err != nil {
				return err
			}
		}
		st.Params = append(st.Params, ps)
	}
	for _, name := range f.Names() {
		if !used[name] {
			return bad("tensor %q belongs to no param of the optimizer", name)
		}
	}
	if err := o.SetState(st); err != nil {
		return fmt.Errorf("optim: LoadState %s: %w", path, err)
	}
	return nil
}

func f32Bytes(xs []float32) []byte {
	b := make([]byte, 4*len(xs))
	for i, x := range xs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}
