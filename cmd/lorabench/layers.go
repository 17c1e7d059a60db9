package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/vklora/vklora/autograd"
	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
)

// The LoRA layer ops of `lorabench bench`: matmul_lora (one projection,
// forward only), o, qkv and mlp, at the model presets PyTorch's baseline
// (scripts/torch_reference.py) measures, or at a custom shape.

// shape is a transformer block's LoRA problem: M tokens, hidden H,
// intermediate I, q and kv output widths, rank r and the MLP activation.
type shape struct {
	Name              string // preset name, "quick" or "custom"
	M, H, I, Q, KV, R int
	Act               ref.Activation
}

// presets are scripts/torch_reference.py's: the attention and MLP widths of
// Llama 3 8B, Gemma 2B and Qwen2.5 0.5B at 8192 (4096) tokens and rank 16
// (Gemma's MLP uses tanh GELU, as in Hugging Face).
var presets = []shape{
	{Name: "llama3-8b", M: 8192, H: 4096, I: 14336, Q: 4096, KV: 1024, R: 16, Act: ref.SwiGLU},
	{Name: "gemma-2b", M: 8192, H: 2048, I: 16384, Q: 2048, KV: 256, R: 16, Act: ref.GEGLUTanh},
	{Name: "qwen2.5-0.5b", M: 4096, H: 896, I: 4864, Q: 896, KV: 128, R: 16, Act: ref.SwiGLU},
}

// quickShape is the -quick (and custom-shape default) problem: small enough
// that every op of the quick suite runs in well under a second on lavapipe.
var quickShape = shape{Name: "quick", M: 64, H: 96, I: 160, Q: 96, KV: 32, R: 8, Act: ref.SwiGLU}

func presetNames() []string {
	var ns []string
	for _, p := range presets {
		ns = append(ns, p.Name)
	}
	return ns
}

// loraScale is s = alpha/r of every adapter (as in scripts/torch_reference.py).
const loraScale = 2.0

// Passes of a layer case.
const (
	passFwd    = "fwd"    // forward only
	passFwdBwd = "fwdbwd" // forward, then backward of a pre-uploaded upstream gradient
)

// projDim is one projection's weight [out, in].
type projDim struct {
	name    string
	out, in int
}

// gpuStep records one step of a layer op (see layerOp.gpu).
type gpuStep func(eng *lora.Engine, rec *vk.Recorder, ps []*lora.Projection, act ref.Activation, x *vk.Tensor, gys []*vk.Tensor, bwd bool) (outs []*vk.Tensor, saved []vk.Releaser, err error)

// layerOp describes one LoRA layer op for the generic case below.
type layerOp struct {
	name    string
	fwdOnly bool
	projs   func(s shape) []projDim
	xWidth  func(s shape) int   // columns of X
	yWidths func(s shape) []int // columns of each forward output
	yNames  []string
	// gpu records one step on X (and for bwd the upstream gradients gys):
	// the outputs in the order of ref (forward outputs, then for bwd dX and
	// dA, dB of each projection) and the saved contexts to free. What it
	// returns is owned by the caller, also on error.
	gpu gpuStep
	// ref computes the same outputs in float64.
	ref func(x []float64, gys [][]float64, m int, ps []*ref.Proj, act ref.Activation, bwd bool) [][]float64
}

func (op *layerOp) isMLP() bool { return isMLPOp(op.name) }

// isMLPOp reports whether an op name is the MLP (mlp, or mlp_keep_saved).
func isMLPOp(name string) bool { return strings.HasPrefix(name, "mlp") }

func init() {
	// mlp_keep_saved is mlp with lora.MLP.KeepSaved (bench -keep-saved):
	// its backward allocates de and dg instead of writing them over the
	// saved e and g (mlp's default in-place backward).
	m := *layerOps["mlp"]
	m.name = "mlp_keep_saved"
	m.gpu = layerStep(func(eng *lora.Engine, ps []*lora.Projection, act ref.Activation) autograd.Function {
		return autograd.NewMLP(&lora.MLP{Engine: eng, Gate: ps[0], Up: ps[1], Down: ps[2], Act: act, KeepSaved: true})
	})
	layerOps[m.name] = &m
}

var layerOps = map[string]*layerOp{
	"matmul_lora": {
		name: "matmul_lora", fwdOnly: true, yNames: []string{"Y"},
		// The MLP's widest projection, gate: [I, H].
		projs:   func(s shape) []projDim { return []projDim{{"w", s.I, s.H}} },
		xWidth:  func(s shape) int { return s.H },
		yWidths: func(s shape) []int { return []int{s.I} },
		gpu: func(eng *lora.Engine, rec *vk.Recorder, ps []*lora.Projection, _ ref.Activation, x *vk.Tensor, _ []*vk.Tensor, _ bool) ([]*vk.Tensor, []vk.Releaser, error) {
			y, err := eng.MatmulLoRA(rec, x, ps[0], nil)
			if err != nil {
				return nil, nil, err
			}
			return []*vk.Tensor{y}, nil, nil
		},
		ref: func(x []float64, _ [][]float64, m int, ps []*ref.Proj, _ ref.Activation, _ bool) [][]float64 {
			return [][]float64{ref.LinearForward(x, m, ps[0])}
		},
	},
	"o": {
		name: "o", yNames: []string{"Y"},
		projs:   func(s shape) []projDim { return []projDim{{"o", s.H, s.Q}} },
		xWidth:  func(s shape) int { return s.Q },
		yWidths: func(s shape) []int { return []int{s.H} },
		gpu: layerStep(func(eng *lora.Engine, ps []*lora.Projection, _ ref.Activation) autograd.Function {
			return autograd.NewO(&lora.O{Engine: eng, Proj: ps[0]})
		}),
		ref: func(x []float64, gys [][]float64, m int, ps []*ref.Proj, _ ref.Activation, bwd bool) [][]float64 {
			y := ref.LinearForward(x, m, ps[0])
			if !bwd {
				return [][]float64{y}
			}
			dx, g := ref.LinearBackward(x, gys[0], m, ps[0])
			return append([][]float64{y, dx}, gradOuts(g)...)
		},
	},
	"qkv": {
		name: "qkv", yNames: []string{"Q", "K", "V"},
		projs:   func(s shape) []projDim { return []projDim{{"q", s.Q, s.H}, {"k", s.KV, s.H}, {"v", s.KV, s.H}} },
		xWidth:  func(s shape) int { return s.H },
		yWidths: func(s shape) []int { return []int{s.Q, s.KV, s.KV} },
		gpu: layerStep(func(eng *lora.Engine, ps []*lora.Projection, _ ref.Activation) autograd.Function {
			return autograd.NewQKV(&lora.QKV{Engine: eng, Q: ps[0], K: ps[1], V: ps[2]})
		}),
		ref: func(x []float64, gys [][]float64, m int, ps []*ref.Proj, _ ref.Activation, bwd bool) [][]float64 {
			q, k, v := ref.QKVForward(x, m, ps[0], ps[1], ps[2])
			if !bwd {
				return [][]float64{q, k, v}
			}
			dx, dq, dk, dv := ref.QKVBackward(x, gys[0], gys[1], gys[2], m, ps[0], ps[1], ps[2])
			return append([][]float64{q, k, v, dx}, gradOuts(dq, dk, dv)...)
		},
	},
	"mlp": {
		name: "mlp", yNames: []string{"Y"},
		projs:   func(s shape) []projDim { return []projDim{{"gate", s.I, s.H}, {"up", s.I, s.H}, {"down", s.H, s.I}} },
		xWidth:  func(s shape) int { return s.H },
		yWidths: func(s shape) []int { return []int{s.H} },
		gpu: layerStep(func(eng *lora.Engine, ps []*lora.Projection, act ref.Activation) autograd.Function {
			return autograd.NewMLP(&lora.MLP{Engine: eng, Gate: ps[0], Up: ps[1], Down: ps[2], Act: act})
		}),
		ref: func(x []float64, gys [][]float64, m int, ps []*ref.Proj, act ref.Activation, bwd bool) [][]float64 {
			y, _, _ := ref.MLPForward(x, m, ps[0], ps[1], ps[2], act)
			if !bwd {
				return [][]float64{y}
			}
			dx, dg, du, dd := ref.MLPBackward(x, gys[0], m, ps[0], ps[1], ps[2], act)
			return append([][]float64{y, dx}, gradOuts(dg, du, dd)...)
		},
	},
}

// layerStep is the gpu step of a training layer, recorded through its
// autograd Function: the forward outputs, then for bwd dX and dA, dB of each
// projection (the Function's parameter order, which is ref's). The saved
// context is returned to free.
func layerStep(newFn func(eng *lora.Engine, ps []*lora.Projection, act ref.Activation) autograd.Function) gpuStep {
	return func(eng *lora.Engine, rec *vk.Recorder, ps []*lora.Projection, act ref.Activation, x *vk.Tensor, gys []*vk.Tensor, bwd bool) ([]*vk.Tensor, []vk.Releaser, error) {
		outs, ctx, err := newFn(eng, ps, act).Forward(rec, []*vk.Tensor{x})
		if err != nil {
			return nil, nil, err
		}
		hold := []vk.Releaser{ctx}
		if !bwd {
			return outs, hold, nil
		}
		dx, params, err := ctx.Backward(rec, gys)
		return append(append(outs, dx...), params...), hold, err
	}
}

// gradOuts lists each projection's gradients in the order of the autograd
// Function's parameters (autograd.ParamNames): dA, dB, then those of its
// extensions, the lora_B bias's, DoRA's magnitude's and the base bias's,
// where it has them.
func gradOuts(gs ...ref.Grads) [][]float64 {
	var out [][]float64
	for _, g := range gs {
		out = append(out, g.DA, g.DB)
		for _, x := range [][]float64{g.DLoRABias, g.DMagnitude, g.DBias} {
			if x != nil {
				out = append(out, x)
			}
		}
	}
	return out
}

// outNames names the outputs op.gpu and op.ref return with extensions ext
// on every projection.
func (op *layerOp) outNames(s shape, bwd bool, ext layerExt) []string {
	ns := append([]string(nil), op.yNames...)
	if bwd {
		ns = append(ns, "dX")
		for _, p := range op.projs(s) {
			ns = append(ns, "dA_"+p.name, "dB_"+p.name)
			if ext.LoRABias {
				ns = append(ns, "dbB_"+p.name)
			}
			if ext.DoRA {
				ns = append(ns, "dm_"+p.name)
			}
		}
	}
	return ns
}

// layerFLOPs is the matmul work summed over the projections: forward
// 2·M·in·out (X·Wᵀ) + 2·M·r·(in+out) (X·Aᵀ, then ·Bᵀ); backward (frozen W)
// 2·M·in·out (dX = G·W) + 4·M·r·(in+out) (G·B, dX's adapter term, dA, dB).
// Elementwise work (the MLP activation) is not counted, as PyTorch's
// baseline (scripts/torch_reference.py) does not count it either.
func layerFLOPs(ps []projDim, m, r int, bwd bool) float64 {
	var f float64
	for _, p := range ps {
		mm := 2 * float64(m) * float64(p.in) * float64(p.out)
		lr := 2 * float64(m) * float64(r) * float64(p.in+p.out)
		f += mm + lr
		if bwd {
			f += mm + 2*lr
		}
	}
	return f
}

// layerBytes is a lower bound on the device-memory traffic of one step:
// weights (in format w, see weightBytes) and adapters, X and the outputs
// once each (for bwd also the weights again, the upstream gradients, dX and
// the adapter gradients), not the intermediates.
func layerBytes(op *layerOp, s shape, d dtype.DType, w weightFormat, bwd bool) float64 {
	var n float64
	ps := op.projs(s)
	wb := projWeightBytes(ps, w, d)
	for _, p := range ps {
		n += float64(s.R) * float64(p.in+p.out)
	}
	var ys float64
	for _, w := range op.yWidths(s) {
		ys += float64(w)
	}
	x := float64(s.M) * float64(op.xWidth(s))
	n += x + float64(s.M)*ys
	if bwd {
		for _, p := range ps {
			n += 2 * float64(s.R) * float64(p.in+p.out)
		}
		n += x + float64(s.M)*ys + x // X again, gys, dX
		wb *= 2
	}
	return n*float64(d.Size()) + wb
}

// projWeightBytes is the device memory of the projections' base weights.
func projWeightBytes(ps []projDim, w weightFormat, d dtype.DType) float64 {
	var n float64
	for _, p := range ps {
		n += weightBytes(w, d, p.out, p.in)
	}
	return n
}

// layerCase is one op at one shape, dtype, pass and weight format (of every
// projection's base weight). valRows bounds the rows
// of the validated problem: the op runs again on the first min(M, valRows)
// rows of X (and of the upstream gradients) with the same weights, and
// every output of that complete smaller problem, adapter gradients
// included, is compared with the float64 reference.
func layerCase(op *layerOp, s shape, d dtype.DType, pass string, w weightFormat, valRows int) benchCase {
	return layerCaseExt(op, s, d, pass, w, valRows, layerExt{})
}

// layerCaseExt is layerCase with PEFT's extensions ext on every projection
// (bench -dropout, -lora-bias, -dora); the form names them.
func layerCaseExt(op *layerOp, s shape, d dtype.DType, pass string, w weightFormat, valRows int, ext layerExt) benchCase {
	bwd := pass == passFwdBwd
	n, k := 0, op.xWidth(s)
	for _, w := range op.yWidths(s) {
		n += w
	}
	if op.isMLP() {
		n, k = s.H, s.I
	}
	c := benchCase{
		Op: op.name, Form: s.Name + " " + pass + ext.formSuffix(), DType: d, M: s.M, N: n, K: k, Weight: w,
		FLOPs:       layerFLOPs(op.projs(s), s.M, s.R, bwd),
		Bytes:       layerBytes(op, s, d, w, bwd),
		WeightBytes: projWeightBytes(op.projs(s), w, d),
		Layer:       &layerInfo{Shape: s, Pass: pass, Ext: ext},
		Need:        layerNeeds(op, s, d, w, bwd, valRows, ext),
		Setup: func(eng *lora.Engine, rng *rand.Rand) (*benchRun, error) {
			return setupLayer(eng, rng, op, s, d, w, bwd, valRows, ext)
		},
	}
	// Hints when it does not fit: fewer tokens (-m), then NF4 weights.
	c.Smaller = append([]resize{{"-m", s.M, func(v int) benchCase {
		t := s
		t.M = v
		return layerCaseExt(op, t, d, pass, w, valRows, ext)
	}, nil}}, nf4Resize(c, func() benchCase { return layerCaseExt(op, s, d, pass, nf4Default, valRows, ext) })...)
	return c
}

// layerNeeds is what setupLayer allocates and one step of the op (forward,
// and for bwd backward) allocates and dispatches, see needs.
func layerNeeds(op *layerOp, s shape, d dtype.DType, w weightFormat, bwd bool, valRows int, ext layerExt) needs {
	var nd needs
	ds := float64(d.Size())
	fm, r := float64(s.M), float64(s.R)
	// Held by the case: base weights (uploaded dense, then quantized for
	// NF4), adapters, X and the upstream gradients.
	var gradElems float64 // of the adapter gradients
	for _, p := range op.projs(s) {
		out, in := float64(p.out), float64(p.in)
		wname := fmt.Sprintf("W_%s [%d,%d] %s", p.name, p.out, p.in, d)
		if w.NF4 {
			nd.transient(wname, ds, out, in) // the dense copy, released once quantized
			nd.device += weightBytes(w, d, p.out, p.in)
			nd.host += out * in * hostNF4
		} else {
			nd.buf(wname, ds, out, in)
		}
		nd.buf(fmt.Sprintf("A_%s [%d,%d] %s", p.name, s.R, p.in, d), ds, r, in)
		nd.buf(fmt.Sprintf("B_%s [%d,%d] %s", p.name, p.out, s.R, d), ds, out, r)
		nd.host += hostInput(out*in+r*in+out*r, d)
		// The step: x·Aᵀ [M, r] f32, y [M, out]; backward g·B [M, r] f32,
		// g·W [M, in] into dX, dA [r, in], dB [out, r].
		nd.buf(fmt.Sprintf("X·A_%sᵀ [%d,%d] f32", p.name, s.M, s.R), 4, fm, r)
		nd.products = append(nd.products, [2]float64{fm, out}, [2]float64{fm, r})
		if bwd {
			nd.buf(fmt.Sprintf("G·B_%s [%d,%d] f32", p.name, s.M, s.R), 4, fm, r)
			nd.buf(fmt.Sprintf("dA_%s [%d,%d] %s", p.name, s.R, p.in, d), ds, r, in)
			nd.buf(fmt.Sprintf("dB_%s [%d,%d] %s", p.name, p.out, s.R, d), ds, out, r)
			nd.products = append(nd.products, [2]float64{fm, in}, [2]float64{r, in}, [2]float64{out, r})
			gradElems += r*in + out*r
		}
		ext.needs(&nd, p, s.M, d, w, bwd)
	}
	xw := float64(op.xWidth(s))
	nd.buf(fmt.Sprintf("X [%d,%d] %s", s.M, op.xWidth(s), d), ds, fm, xw)
	nd.host += hostInput(fm*xw, d)
	for i, yw := range op.yWidths(s) {
		y := float64(yw)
		nd.buf(fmt.Sprintf("%s [%d,%d] %s", op.yNames[i], s.M, yw, d), ds, fm, y)
		if bwd {
			nd.buf(fmt.Sprintf("d%s [%d,%d] %s", op.yNames[i], s.M, yw, d), ds, fm, y)
			nd.host += hostInput(fm*y, d)
		}
	}
	if bwd {
		nd.buf(fmt.Sprintf("dX [%d,%d] %s", s.M, op.xWidth(s), d), ds, fm, xw)
	}
	if op.isMLP() {
		// e = X·W_gateᵀ, g = X·W_upᵀ and h = act(e, g), each [M, I], saved
		// for the backward; mlp_keep_saved's backward allocates de and dg.
		n := 3
		if bwd && op.name == "mlp_keep_saved" {
			n = 5
		}
		for i := 0; i < n; i++ {
			nd.buf(fmt.Sprintf("MLP intermediate [%d,%d] %s", s.M, s.I, d), ds, fm, float64(s.I))
		}
	}
	// Validation: the op again on mv rows, its outputs read back, and the
	// float64 reference (outputs, for the MLP its intermediates, several
	// times over).
	mv := math.Min(fm, float64(valRows))
	rowElems := xw
	for _, yw := range op.yWidths(s) {
		rowElems += float64(yw)
	}
	if op.isMLP() {
		rowElems += 6 * float64(s.I)
	}
	if bwd {
		rowElems *= 2
	}
	nd.host += hostReadback(mv*rowElems+gradElems, d) + 3*8*(mv*rowElems+gradElems)
	return nd.finish()
}

// layerInfo is what a layer case adds to its result row.
type layerInfo struct {
	Shape shape
	Pass  string
	Ext   layerExt
}

// tensors is a list of device tensors released together.
type tensors []*vk.Tensor

func (ts *tensors) upload(dev *vk.Device, d dtype.DType, xs []float64, shape ...int) (*vk.Tensor, error) {
	t, err := dev.TensorFrom(d, ref.ToFloat32(xs), shape...)
	if err != nil {
		return nil, err
	}
	*ts = append(*ts, t)
	return t, nil
}

func (ts tensors) Release() {
	for _, t := range ts {
		t.Release()
	}
}

func setupLayer(eng *lora.Engine, rng *rand.Rand, op *layerOp, s shape, d dtype.DType, wf weightFormat, bwd bool, valRows int, ext layerExt) (*benchRun, error) {
	dev := eng.Device()
	var held tensors
	var weights []lora.Weight
	release := func() {
		held.Release()
		for _, w := range weights {
			releaseWeight(w)
		}
	}
	fail := func(err error) (*benchRun, error) {
		release()
		return nil, err
	}
	// Inputs as scripts/torch_reference.py draws them, rounded to d so the reference
	// sees what the GPU stores: W and A N(0,1)/√in, B 0.1·N(0,1)/√r (not
	// zero, so the adapter path is exercised), X and the upstream gradients
	// N(0,1). An NF4 W is quantized from that draw and the reference gets
	// its dequantized values (uploadWeight).
	dims := op.projs(s)
	rps := make([]*ref.Proj, len(dims))
	gps := make([]*lora.Projection, len(dims))
	for i, p := range dims {
		rp := &ref.Proj{Out: p.out, In: p.in, R: s.R, S: loraScale,
			W: ref.RoundTo(d, ref.Random(rng, p.out*p.in, 1/math.Sqrt(float64(p.in)))),
			A: ref.RoundTo(d, ref.Random(rng, s.R*p.in, 1/math.Sqrt(float64(p.in)))),
			B: ref.RoundTo(d, ref.Random(rng, p.out*s.R, 0.1/math.Sqrt(float64(s.R)))),
		}
		w, wv, err := uploadWeight(dev, wf, d, rp.W, p.out, p.in)
		if err != nil {
			return fail(err)
		}
		weights, rp.W = append(weights, w), wv
		a, err := held.upload(dev, d, rp.A, s.R, p.in)
		if err != nil {
			return fail(err)
		}
		b, err := held.upload(dev, d, rp.B, p.out, s.R)
		if err != nil {
			return fail(err)
		}
		rps[i], gps[i] = rp, &lora.Projection{W: w, A: a, B: b, Scale: loraScale}
		if err := ext.setup(dev, &held, rng, d, rp, gps[i]); err != nil {
			return fail(err)
		}
	}
	xw := op.xWidth(s)
	xv := ref.RoundTo(d, ref.Random(rng, s.M*xw, 1))
	x, err := held.upload(dev, d, xv, s.M, xw)
	if err != nil {
		return fail(err)
	}
	var gyv [][]float64
	var gys []*vk.Tensor
	if bwd {
		for _, w := range op.yWidths(s) {
			g := ref.RoundTo(d, ref.Random(rng, s.M*w, 1))
			t, err := held.upload(dev, d, g, s.M, w)
			if err != nil {
				return fail(err)
			}
			gyv, gys = append(gyv, g), append(gys, t)
		}
	}
	mv := min(s.M, valRows)
	// One step on x and gys: its outputs and saved contexts are allocated
	// here and held by the recorder, which frees them after the Submit that
	// runs them, so every repeat allocates and frees what a training step
	// does.
	step := func(rec *vk.Recorder, x *vk.Tensor, gys []*vk.Tensor) error {
		outs, saved, err := op.gpu(eng, rec, gps, s.Act, x, gys, bwd)
		for _, t := range outs {
			rec.Hold(t)
		}
		for _, r := range saved {
			rec.Hold(r)
		}
		return err
	}
	return &benchRun{
		Record: func(rec *vk.Recorder) error { return step(rec, x, gys) },
		// The validation's sliced run has mv rows, so other tiles and
		// kernels: its step is prepared too, on views of the first mv rows.
		Prepare: func(rec *vk.Recorder) error {
			if err := step(rec, x, gys); err != nil || mv == s.M {
				return err
			}
			xs, err := x.View(mv, xw)
			if err != nil {
				return err
			}
			var gs []*vk.Tensor
			for i, w := range op.yWidths(s) {
				if !bwd {
					break
				}
				g, err := gys[i].View(mv, w)
				if err != nil {
					return err
				}
				gs = append(gs, g)
			}
			return step(rec, xs, gs)
		},
		Validate: func() (float64, float64, string, error) {
			// The masks the sliced run draws: its forward starts at each
			// generator's current offset.
			vps := ext.validationProjs(rps, gps, mv)
			got, err := runSliced(eng, op, gps, s, d, xv, gyv, mv, bwd)
			if err != nil {
				return 0, 0, "", err
			}
			var gyr [][]float64
			for i, w := range op.yWidths(s) {
				if bwd {
					gyr = append(gyr, gyv[i][:mv*w])
				}
			}
			want := op.ref(xv[:mv*xw], gyr, mv, vps, s.Act, bwd)
			names := op.outNames(s, bwd, ext)
			if len(got) != len(want) || len(names) != len(want) {
				return 0, 0, "", fmt.Errorf("%s: the device returned %d outputs, the reference %d (%d names)", op.name, len(got), len(want), len(names))
			}
			worst, wi := math.Inf(-1), 0
			var parts []string
			for i := range want {
				e := ref.RelErr(got[i], want[i])
				parts = append(parts, fmt.Sprintf("%s %.2g", names[i], e))
				if !(e <= worst) { // NaN-safe: +Inf (NaN output) wins
					worst, wi = e, i
				}
			}
			cols := len(want[wi]) / max(1, mv)
			if n := names[wi]; strings.HasPrefix(n, "d") && n != "dX" {
				cols = 0 // a parameter's gradient: not [rows, cols] of X
			}
			detail := fmt.Sprintf("validated the first %d of %d rows as a complete problem; rel err %s; worst %s: %s",
				mv, s.M, strings.Join(parts, ", "), names[wi], ref.MismatchesRC(got[wi], want[wi], cols, 3))
			return worst, ref.Tolerance(d).Layer, detail, nil
		},
		Release:   release,
		SetEngine: func(e *lora.Engine) { eng = e },
	}, nil
}

// runSliced runs the op on the device for the first mv rows of X (and of the
// upstream gradients) and returns every output in float64.
func runSliced(eng *lora.Engine, op *layerOp, gps []*lora.Projection, s shape, d dtype.DType, xv []float64, gyv [][]float64, mv int, bwd bool) ([][]float64, error) {
	dev := eng.Device()
	var in tensors
	defer func() { in.Release() }() // the inputs appended below
	xw := op.xWidth(s)
	x, err := in.upload(dev, d, xv[:mv*xw], mv, xw)
	if err != nil {
		return nil, err
	}
	var gys []*vk.Tensor
	for i, w := range op.yWidths(s) {
		if !bwd {
			break
		}
		t, err := in.upload(dev, d, gyv[i][:mv*w], mv, w)
		if err != nil {
			return nil, err
		}
		gys = append(gys, t)
	}
	rec, err := dev.NewRecorder()
	if err != nil {
		return nil, err
	}
	defer rec.Release()
	outs, saved, err := op.gpu(eng, rec, gps, s.Act, x, gys, bwd)
	defer func() {
		for _, r := range saved {
			r.Release()
		}
		tensors(outs).Release()
	}()
	if err != nil {
		return nil, err
	}
	if err := rec.Submit(); err != nil {
		return nil, err
	}
	got := make([][]float64, len(outs))
	for i, t := range outs {
		f, err := t.Float32()
		if err != nil {
			return nil, err
		}
		got[i] = ref.FromFloat32(f)
	}
	return got, nil
}
