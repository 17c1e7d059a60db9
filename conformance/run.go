package conformance

import (
	"fmt"
	"sort"

	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
)

// Result is the comparison of one expected tensor with the engine's value.
type Result struct {
	Key  string  // e.g. "Y", "grad.X", "grad.q.lora_A"
	Err  float64 // ‖got − expect‖ / ‖expect‖
	Tol  float64
	Pass bool
}

// Run executes the case on the engine's device (forward, and backward for
// training ops) and compares every expected tensor with its tolerance. An
// error means the case could not run at all.
func Run(eng *lora.Engine, c *Case) ([]Result, error) {
	r := &runner{eng: eng, dev: eng.Device(), c: c, outs: map[string]*vk.Tensor{}, got: map[string][]float32{}}
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
		e := RelErr(got, c.Expect[k].Data)
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
	return lp, nil
}

// out registers a result tensor to download after Submit under key.
func (r *runner) out(key string, t *vk.Tensor) {
	if t == nil {
		return
	}
	r.keep(t)
	r.outs[key] = t
}

// backward records bwd after a barrier on the forward and registers dX and
// the adapter gradients of the case's projections, in their order.
func (r *runner) backward(bwd func() (*vk.Tensor, []lora.ProjGrad, error)) error {
	r.rec.Barrier()
	dx, gs, err := bwd()
	if err != nil {
		return err
	}
	r.out("grad.X", dx)
	for i, n := range r.c.Projections {
		r.out("grad."+n+".lora_A", gs[i].A)
		r.out("grad."+n+".lora_B", gs[i].B)
	}
	return nil
}

func (r *runner) run() error {
	c := r.c
	var err error
	if r.rec, err = r.dev.NewRecorder(); err != nil {
		return err
	}
	r.keep(r.rec)
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
	switch c.Op {
	case "matmul_lora":
		err = r.matmulLoRA(in, ps[0])
	case "lora_o":
		err = r.loraO(in, ps[0])
	case "lora_qkv":
		err = r.loraQKV(in, ps)
	case "lora_mlp":
		err = r.loraMLP(in, ps)
	default:
		err = fmt.Errorf("unknown op %q", c.Op)
	}
	if err != nil {
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

func (r *runner) matmulLoRA(in map[string]*vk.Tensor, p *lora.Projection) error {
	y, err := r.eng.MatmulLoRA(r.rec, in["X"], p, nil)
	r.out("Y", y)
	return err
}

func (r *runner) loraO(in map[string]*vk.Tensor, p *lora.Projection) error {
	l := &lora.O{Engine: r.eng, Proj: p}
	y, saved, err := l.Forward(r.rec, in["X"])
	if err != nil {
		return err
	}
	r.out("Y", y)
	r.keep(saved)
	return r.backward(func() (*vk.Tensor, []lora.ProjGrad, error) {
		dx, g, err := l.Backward(r.rec, saved, in["grad.Y"])
		return dx, []lora.ProjGrad{g}, err
	})
}

func (r *runner) loraQKV(in map[string]*vk.Tensor, ps []*lora.Projection) error {
	l := &lora.QKV{Engine: r.eng, Q: ps[0], K: ps[1], V: ps[2]}
	q, k, v, saved, err := l.Forward(r.rec, in["X"])
	if err != nil {
		return err
	}
	r.out("Q", q)
	r.out("K", k)
	r.out("V", v)
	r.keep(saved)
	return r.backward(func() (*vk.Tensor, []lora.ProjGrad, error) {
		dx, g, err := l.Backward(r.rec, saved, in["grad.Q"], in["grad.K"], in["grad.V"])
		return dx, g[:], err
	})
}

func (r *runner) loraMLP(in map[string]*vk.Tensor, ps []*lora.Projection) error {
	act, err := ref.ParseActivation(r.c.Activation)
	if err != nil {
		return err
	}
	l := &lora.MLP{Engine: r.eng, Gate: ps[0], Up: ps[1], Down: ps[2], Act: act}
	y, saved, err := l.Forward(r.rec, in["X"])
	if err != nil {
		return err
	}
	r.out("Y", y)
	r.keep(saved)
	return r.backward(func() (*vk.Tensor, []lora.ProjGrad, error) {
		dx, g, err := l.Backward(r.rec, saved, in["grad.Y"])
		return dx, g[:], err
	})
}
