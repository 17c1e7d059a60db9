package conformance

import (
	"fmt"
	"sort"

	"github.com/vklora/vklora/activation"
	"github.com/vklora/vklora/autograd"
	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
)

// Result is the comparison of one expected tensor with the engine's value.
type Result struct {
	Key  string  // e.g. "Y", "grad.X", "grad.q.lora_A"
	Err  float64 // ref.RelErr(got, expect): ‖got − expect‖ / ‖expect‖
	Tol  float64
	Pass bool
}

// Run executes the case on the engine's device (forward, and backward for
// training ops) and compares every expected tensor with its tolerance. An
// error means the case could not run at all.
func Run(eng *lora.Engine, c *Case) ([]Result, error) {
	r := newRunner(eng, c, nil)
	defer r.release()
	if err := r.run(); err != nil {
		return nil, fmt.Errorf("conformance: %s: %w", c.Path, err)
	}
	keys := make([]string, 0, len(c.Expect))
	for k := range c.Expect {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Result
	for _, k := range keys {
		got, ok := r.got[k]
		if !ok {
			return nil, fmt.Errorf("conformance: %s: the engine produced no %s", c.Path, k)
		}
		e := ref.RelErr(got, c.Expect[k].Data)
		out = append(out, Result{Key: k, Err: e, Tol: c.Tol[k], Pass: e <= c.Tol[k]})
	}
	return out, nil
}

type runner struct {
	eng   *lora.Engine
	dev   *vk.Device
	c     *Case
	owned []vk.Releaser
	rec   *vk.Recorder
	// pending downloads after Submit: key → tensor
	outs map[string]*vk.Tensor
	got  map[string][]float32
	ps   []*lora.Projection // the case's projections, in its order
	// drops maps a dropout (p and mask bytes) to the one *lora.Dropout
	// that every projection with that same mask shares: a "shared" case's
	// q, k and v (gate and up) then run the engine's shared-mask path,
	// which computes the dropped input once.
	drops map[string]*lora.Dropout
}

// newRunner runs c on eng, recording on rec (nil: run makes its own).
func newRunner(eng *lora.Engine, c *Case, rec *vk.Recorder) *runner {
	return &runner{eng: eng, dev: eng.Device(), c: c, rec: rec, outs: map[string]*vk.Tensor{}, got: map[string][]float32{}}
}

func (r *runner) release() {
	for i := len(r.owned) - 1; i >= 0; i-- {
		r.owned[i].Release()
	}
}

func (r *runner) keep(x vk.Releaser) { r.owned = append(r.owned, x) }

func (r *runner) upload(a *Array) (*vk.Tensor, error) {
	t, err := r.dev.TensorFrom(r.c.DType, a.Data, a.Shape...)
	if err != nil {
		return nil, err
	}
	r.keep(t)
	return t, nil
}

func (r *runner) projection(name string) (*lora.Projection, error) {
	p := r.c.Proj[name]
	lp := &lora.Projection{Scale: p.Scale}
	var err error
	if p.NF4 != nil {
		w, err := quant.Upload(r.dev, p.NF4)
		if err != nil {
			return nil, err
		}
		r.keep(w)
		if w.DType != r.c.DType {
			return nil, fmt.Errorf("projection %s: NF4 dtype %s differs from the case dtype %s", name, w.DType, r.c.DType)
		}
		lp.W.NF4 = w
	} else if lp.W.Dense, err = r.upload(p.Weight); err != nil {
		return nil, err
	}
	if lp.A, err = r.upload(p.A); err != nil {
		return nil, err
	}
	if lp.B, err = r.upload(p.B); err != nil {
		return nil, err
	}
	return lp, r.extensions(p, lp)
}

// extensions sets lp's PEFT extensions from the case; the dropout uses the
// case's own mask, one *lora.Dropout per distinct mask.
func (r *runner) extensions(p *Projection, lp *lora.Projection) error {
	var err error
	x := p.Ext
	for _, v := range []struct {
		a   *Array
		dst **vk.Tensor
	}{{x.LoRABias, &lp.LoRABias}, {x.Magnitude, &lp.Magnitude}, {x.Bias, &lp.Bias}} {
		if v.a != nil {
			if *v.dst, err = r.upload(v.a); err != nil {
				return err
			}
		}
	}
	lp.BiasTrainable = x.BiasTrainable
	if x.Mask == nil {
		return nil
	}
	key := fmt.Sprintf("%v %v ", x.Dropout, x.MaskShape) + string(x.Mask)
	if d, ok := r.drops[key]; ok {
		lp.Dropout = d
		return nil
	}
	mask, err := r.dev.NewTensor(dtype.U8, x.MaskShape...)
	if err != nil {
		return err
	}
	r.keep(mask)
	if err := mask.UploadBytes(x.Mask); err != nil {
		return err
	}
	lp.Dropout = &lora.Dropout{P: x.Dropout, Mask: mask}
	if r.drops == nil {
		r.drops = map[string]*lora.Dropout{}
	}
	r.drops[key] = lp.Dropout
	return nil
}

// out registers a result tensor to download after Submit under key.
func (r *runner) out(key string, t *vk.Tensor) {
	if t == nil {
		return
	}
	r.keep(t)
	r.outs[key] = t
}

func (r *runner) run() error {
	var err error
	if r.rec, err = r.dev.NewRecorder(); err != nil {
		return err
	}
	r.keep(r.rec)
	if err := r.record(); err != nil {
		return err
	}
	if err := r.rec.Submit(); err != nil {
		return err
	}
	for k, t := range r.outs {
		if r.got[k], err = t.Float32(); err != nil {
			return err
		}
	}
	return nil
}

// record uploads the case's inputs and projections and records its op on
// r.rec.
func (r *runner) record() error {
	c := r.c
	var err error
	in := map[string]*vk.Tensor{} // X and the upstream gradients
	for k, a := range c.Inputs {
		if in[k], err = r.upload(a); err != nil {
			return err
		}
	}
	ps := make([]*lora.Projection, len(c.Projections))
	for i, n := range c.Projections {
		if ps[i], err = r.projection(n); err != nil {
			return err
		}
	}
	r.ps = ps
	switch c.Op {
	case "matmul_lora":
		err = r.matmulLoRA(in, ps[0])
	case "lora_o":
		err = r.layer(in, autograd.NewO(&lora.O{Engine: r.eng, Proj: ps[0]}), "Y")
	case "lora_qkv":
		err = r.layer(in, autograd.NewQKV(&lora.QKV{Engine: r.eng, Q: ps[0], K: ps[1], V: ps[2]}), "Q", "K", "V")
	case "lora_mlp":
		var act activation.Activation
		if act, err = activation.Parse(c.Activation); err == nil {
			err = r.layer(in, autograd.NewMLP(&lora.MLP{Engine: r.eng, Gate: ps[0], Up: ps[1], Down: ps[2], Act: act}), "Y")
		}
	default:
		err = fmt.Errorf("unknown op %q", c.Op)
	}
	return err
}

// Prepare builds, in parallel, the kernels that running cases on eng will
// use (vk.Device.Prepare: each case recorded once on a dry recorder, with
// its real inputs uploaded). A suite of cases of many shapes and dtypes
// then pays a cold driver's compile time side by side rather than one
// kernel at a time as each case reaches it. The cases are unchanged.
func Prepare(eng *lora.Engine, cases []*Case) error {
	return eng.Device().Prepare(func(rec *vk.Recorder) error {
		for _, c := range cases {
			r := newRunner(eng, c, rec)
			err := r.record()
			if err == nil {
				err = rec.Submit() // runs nothing; frees the recording's temporaries
			}
			r.release()
			if err != nil {
				return fmt.Errorf("conformance: %s: %w", c.Path, err)
			}
		}
		return nil
	})
}

func (r *runner) matmulLoRA(in map[string]*vk.Tensor, p *lora.Projection) error {
	y, err := r.eng.MatmulLoRA(r.rec, in["X"], p, nil)
	r.out("Y", y)
	return err
}

// layer runs a training op through its autograd Function: the forward on
// X gives the outputs named ys; after a barrier the backward on their
// upstream gradients ("grad."+name) gives grad.X and the adapter gradients
// of the case's projections, in their order.
func (r *runner) layer(in map[string]*vk.Tensor, fn autograd.Function, ys ...string) error {
	outs, ctx, err := fn.Forward(r.rec, []*vk.Tensor{in["X"]})
	if err != nil {
		return err
	}
	r.keep(ctx)
	gys := make([]*vk.Tensor, len(ys))
	for i, n := range ys {
		r.out(n, outs[i])
		gys[i] = in["grad."+n]
	}
	r.rec.Barrier()
	dx, params, err := ctx.Backward(r.rec, gys)
	for _, t := range dx {
		r.out("grad.X", t)
	}
	// In the Function's Params order (autograd.ParamNames per projection).
	var keys []string
	for i, p := range r.ps {
		for _, n := range autograd.ParamNames(p) {
			keys = append(keys, fmt.Sprintf("grad.%s.%s", r.c.Projections[i], n))
		}
	}
	for i, t := range params {
		if i < len(keys) {
			r.out(keys[i], t)
		}
	}
	return err
}
