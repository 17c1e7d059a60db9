package kernels

import (
	"fmt"
	"math"
	"slices"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/shaders"
	"github.com/vklora/vklora/vk"
)

// DropoutSource is where a dropout mask comes from: an explicit keep mask
// (U8, 1 keep and 0 drop, the shape of the input) or the counter-based
// generator at (Seed, Offset): element e of the input (row-major) keeps
// when word (Offset+e) mod 4 of Philox-4x32-10 at counter ⌊(Offset+e)/4⌋
// under key Seed is ≥ round(P·2³²), so one draw decides four elements (as
// cuRAND's dropout uses the generator). P is the drop probability in
// [0, 1).
type DropoutSource struct {
	P            float64
	Seed, Offset uint64
	Mask         *vk.Tensor
}

// Threshold is the generator's keep threshold for P: round(P·2³²).
func (s DropoutSource) Threshold() uint32 {
	return uint32(min(math.Round(s.P*(1<<32)), math.MaxUint32))
}

// Inv is the inverted-dropout scale 1/(1−P), rounded once to f32 as
// torch's dropout does.
func (s DropoutSource) Inv() float32 { return float32(1 / (1 - s.P)) }

// CheckDropoutP refuses a dropout probability outside [0, 1).
func CheckDropoutP(p float64) error {
	if math.IsNaN(p) || p < 0 || p >= 1 {
		return fmt.Errorf("dropout probability %v must be in [0, 1): %w", p, ErrBadInput)
	}
	return nil
}

func (s DropoutSource) check(x *vk.Tensor) error {
	if err := CheckDropoutP(s.P); err != nil {
		return err
	}
	if s.Mask == nil {
		return nil
	}
	if s.Mask.Released() || s.Mask.DType() != dtype.U8 || !slices.Equal(s.Mask.Shape(), x.Shape()) {
		return fmt.Errorf("dropout mask %s must be u8 of the input's shape %v: %w", s.Mask, x.Shape(), ErrBadInput)
	}
	return nil
}

// dropoutKernel is dropout.comp's kernel of mode for dtype d and src's
// mask kind, with what its mask binding takes: src's explicit mask, else
// (a generated mask, which the kernel does not read) unused's memory.
func (e *Dispatcher) dropoutKernel(d dtype.DType, mode shaders.DropoutMode, src DropoutSource, unused *vk.Tensor) (*vk.Kernel, vk.Binding, error) {
	k, err := e.dev.ShaderKernel(shaders.DropoutKey{D: d, Mode: mode, Mask: src.Mask != nil}, addWG)
	if err != nil {
		return nil, vk.Binding{}, err
	}
	if src.Mask != nil {
		return k, src.Mask.Binding(), nil
	}
	return k, unused.Binding(), nil
}

// Dropout records the dropout kernel (shaders/dropout.comp) on x [M, N]:
// out = D(x) (DropoutForward), x − D(x) (DropoutResidual) or out + D(x)
// (DropoutAdd), with D(x) = x ⊙ mask · 1/(1−P). out and x share shape and
// dtype; out must not alias x.
func (e *Dispatcher) Dropout(rec *vk.Recorder, mode shaders.DropoutMode, out, x *vk.Tensor, src DropoutSource) error {
	if mode > shaders.DropoutAdd {
		return fmt.Errorf("kernels: Dropout: mode %d is not forward, residual or add (DropoutExpand has its own call): %w", mode, ErrBadInput)
	}
	if err := checkElementwise(rec, "out", out, "x", x); err != nil {
		return fmt.Errorf("kernels: Dropout: %w", err)
	}
	if err := src.check(x); err != nil {
		return fmt.Errorf("kernels: Dropout: %w", err)
	}
	rows, cols := rowsCols(x)
	k, mask, err := e.dropoutKernel(x.DType(), mode, src, x)
	if err != nil {
		return err
	}
	p := src.push(rows, cols)
	return rec.Dispatch(k, e.elementGrid(rows, ceilDiv(cols, 4)), vk.PushBytes(&p), out.Binding(), x.Binding(), mask)
}

// DropoutExpand records out += D(s·G·A) for out [M, N], G f32 [M, r] and
// A [r, N] of out's dtype, with the mask of src over out's elements: the
// LoRA part of a dropout layer's input gradient, each kept element's sum
// taken in f32 in the kernel, so the [M, N] product is never stored.
func (e *Dispatcher) DropoutExpand(rec *vk.Recorder, out, g, a *vk.Tensor, scale float32, src DropoutSource) error {
	if rec == nil {
		return fmt.Errorf("kernels: DropoutExpand: recorder is nil: %w", ErrBadInput)
	}
	for _, op := range []struct {
		name string
		t    *vk.Tensor
	}{{"out", out}, {"G", g}, {"A", a}} {
		if err := checkOperand(op.name, op.t); err != nil || op.t.Rank() != 2 {
			return fmt.Errorf("kernels: DropoutExpand: %s %s must be a 2-D float tensor (%v): %w", op.name, op.t, err, ErrBadInput)
		}
	}
	m, n, r := out.Dim(0), out.Dim(1), g.Dim(1)
	if g.DType() != dtype.F32 || g.Dim(0) != m || a.DType() != out.DType() || a.Dim(0) != r || a.Dim(1) != n {
		return fmt.Errorf("kernels: DropoutExpand: want G f32[%d r] and A %s[r %d] for out %s; got G %s, A %s: %w",
			m, out.DType(), n, out, g, a, ErrBadInput)
	}
	if vk.Overlaps(out, g) || vk.Overlaps(out, a) {
		return fmt.Errorf("kernels: DropoutExpand: out %s shares memory with G or A: %w", out, ErrBadInput)
	}
	if !finite32(scale) {
		return fmt.Errorf("kernels: DropoutExpand: scale %v is not finite: %w", scale, ErrBadInput)
	}
	if err := src.check(out); err != nil {
		return fmt.Errorf("kernels: DropoutExpand: %w", err)
	}
	k, mask, err := e.dropoutKernel(out.DType(), shaders.DropoutExpand, src, out)
	if err != nil {
		return err
	}
	p := src.push(m, n)
	p.R, p.Scale = uint32(r), scale
	return rec.Dispatch(k, e.elementGrid(m, ceilDiv(n, 4)), vk.PushBytes(&p), out.Binding(), out.Binding(), mask, g.Binding(), a.Binding())
}

// push is the dropout kernels' push block for src over [rows, cols].
func (s DropoutSource) push(rows, cols int) shaders.DropoutPush {
	return shaders.DropoutPush{Rows: uint32(rows), Cols: uint32(cols), Threshold: s.Threshold(), Inv: s.Inv(),
		SeedLo: uint32(s.Seed), SeedHi: uint32(s.Seed >> 32), OffLo: uint32(s.Offset), OffHi: uint32(s.Offset >> 32)}
}

// ColScale records out[i,j] = alpha·out[i,j] + (v[j] + k)·a[i,j] for a and
// out [M, N] of one dtype and v f32 [N]. alpha = 0 ignores out's contents.
func (e *Dispatcher) ColScale(rec *vk.Recorder, out, a, v *vk.Tensor, alpha, k float32) error {
	if err := checkElementwise(rec, "out", out, "a", a); err != nil {
		return fmt.Errorf("kernels: ColScale: %w", err)
	}
	rows, cols := rowsCols(a)
	if err := checkVector("v", v, cols, dtype.F32); err != nil {
		return fmt.Errorf("kernels: ColScale: %w", err)
	}
	if !finite32(alpha) || !finite32(k) {
		return fmt.Errorf("kernels: ColScale: alpha %v or k %v is not finite: %w", alpha, k, ErrBadInput)
	}
	kern, err := e.dev.ShaderKernel(shaders.ColKey{Op: shaders.ColScale, D: a.DType()}, addWG)
	if err != nil {
		return err
	}
	p := shaders.ColPush{Rows: uint32(rows), Cols: uint32(cols), Alpha: alpha, K: k}
	return rec.Dispatch(kern, e.elementGrid(rows, cols), vk.PushBytes(&p), out.Binding(), a.Binding(), a.Binding(), v.Binding())
}

// ColSum records out[j] = alpha·Σ_i a[i,j] (times b[i,j] when b is set),
// times v[j] when v (f32 [N]) is set, for a (and b) [M, N] of one dtype;
// out is [N] of that dtype or f32. The sum is f32, rounded once.
func (e *Dispatcher) ColSum(rec *vk.Recorder, out, a, b, v *vk.Tensor, alpha float32) error {
	if rec == nil {
		return fmt.Errorf("kernels: ColSum: recorder is nil: %w", ErrBadInput)
	}
	if err := checkOperand("a", a); err != nil || a.Rank() != 2 {
		return fmt.Errorf("kernels: ColSum: a %s must be a 2-D float tensor (%v): %w", a, err, ErrBadInput)
	}
	rows, cols := rowsCols(a)
	if b != nil {
		if err := checkElementwise(rec, "b", b, "a", a); err != nil {
			return fmt.Errorf("kernels: ColSum: %w", err)
		}
	}
	if out == nil || (out.DType() != a.DType() && out.DType() != dtype.F32) {
		return fmt.Errorf("kernels: ColSum: out %s must be [%d] of %s or f32: %w", out, cols, a.DType(), ErrBadInput)
	}
	if err := checkVector("out", out, cols, out.DType()); err != nil {
		return fmt.Errorf("kernels: ColSum: %w", err)
	}
	if !finite32(alpha) {
		return fmt.Errorf("kernels: ColSum: alpha %v is not finite: %w", alpha, ErrBadInput)
	}
	vBind, useV := a.Binding(), float32(0)
	if v != nil {
		if err := checkVector("v", v, cols, dtype.F32); err != nil {
			return fmt.Errorf("kernels: ColSum: %w", err)
		}
		vBind, useV = v.Binding(), 1
	}
	second := a.Binding()
	if b != nil {
		second = b.Binding()
	}
	gx := ceilDiv(cols, 64)
	chunk := e.colSumChunk(rows, gx)
	if chunk == 0 {
		key := shaders.ColKey{Op: shaders.ColSum, D: a.DType(), C32: out.DType() == dtype.F32 && a.DType() != dtype.F32, Prod: b != nil}
		kern, err := e.dev.ShaderKernel(key)
		if err != nil {
			return err
		}
		p := shaders.ColPush{Rows: uint32(rows), Cols: uint32(cols), Alpha: alpha, K: useV}
		return rec.Dispatch(kern, [3]uint32{uint32(gx), 1, 1}, vk.PushBytes(&p), out.Binding(), a.Binding(), second, vBind)
	}
	// Split: each workgroup row sums chunk rows into f32 partials [gy,
	// cols]; a second pass sums the partials, scales and rounds once.
	gy := ceilDiv(rows, chunk)
	partial, ok := rec.Reuse(dtype.F32, gy, cols)
	if !ok {
		var err error
		if partial, err = e.dev.NewTensor(dtype.F32, gy, cols); err != nil {
			return fmt.Errorf("kernels: ColSum partial sums: %w", err)
		}
		rec.Hold(partial)
	}
	first, err := e.dev.ShaderKernel(shaders.ColKey{Op: shaders.ColSum, D: a.DType(), C32: a.DType() != dtype.F32, Prod: b != nil})
	if err != nil {
		return err
	}
	p := shaders.ColPush{Rows: uint32(rows), Cols: uint32(cols), Alpha: 1, Chunk: uint32(chunk)}
	if err := rec.Dispatch(first, [3]uint32{uint32(gx), uint32(gy), 1}, vk.PushBytes(&p), partial.Binding(), a.Binding(), second, a.Binding()); err != nil {
		return err
	}
	rec.Barrier()
	k2 := shaders.ColKey{Op: shaders.ColSum, D: out.DType(), A32: out.DType() != dtype.F32}
	kern, err := e.dev.ShaderKernel(k2)
	if err != nil {
		return err
	}
	p = shaders.ColPush{Rows: uint32(gy), Cols: uint32(cols), Alpha: alpha, K: useV}
	if err := rec.Dispatch(kern, [3]uint32{uint32(gx), 1, 1}, vk.PushBytes(&p), out.Binding(), partial.Binding(), partial.Binding(), vBind); err != nil {
		return err
	}
	return rec.Recycle(partial)
}

// colSumMinChunk is the fewest rows one workgroup row of a split column
// sum adds (64 per lane): fewer would make the partials, which the second
// pass reads, outweigh the split. A variable so that tests can split small
// matrices.
var colSumMinChunk = 256

// colSumChunk is the rows per workgroup row of a column sum over rows×cols
// with gx workgroups across, or 0 to sum every row in one pass: the sum
// splits its rows until the grid reaches the dispatcher's target, since
// one workgroup per 64 columns (gx) alone leaves most of a GPU idle, each
// invocation adding thousands of rows in sequence.
func (e *Dispatcher) colSumChunk(rows, gx int) int {
	want := min(ceilDiv(e.targetGroups(), gx), ceilDiv(rows, colSumMinChunk), int(e.dev.Caps().MaxWorkgroupCount[1]))
	if want <= 1 {
		return 0
	}
	return ceilDiv(rows, want)
}

// RowSquares records out[i] = Σ_j a[i,j]² (f32) for a [M, N].
func (e *Dispatcher) RowSquares(rec *vk.Recorder, out, a *vk.Tensor) error {
	if rec == nil {
		return fmt.Errorf("kernels: RowSquares: recorder is nil: %w", ErrBadInput)
	}
	if err := checkOperand("a", a); err != nil || a.Rank() != 2 {
		return fmt.Errorf("kernels: RowSquares: a %s must be a 2-D float tensor (%v): %w", a, err, ErrBadInput)
	}
	rows, cols := rowsCols(a)
	if err := checkVector("out", out, rows, dtype.F32); err != nil {
		return fmt.Errorf("kernels: RowSquares: %w", err)
	}
	kern, err := e.dev.ShaderKernel(shaders.ColKey{Op: shaders.RowSquares, D: a.DType(), C32: true})
	if err != nil {
		return err
	}
	p := shaders.ColPush{Rows: uint32(rows), Cols: uint32(cols)}
	g := min(rows, int(e.dev.Caps().MaxWorkgroupCount[0]), 65535)
	return rec.Dispatch(kern, [3]uint32{uint32(g), 1, 1}, vk.PushBytes(&p), out.Binding(), a.Binding(), a.Binding(), a.Binding())
}

// RowSquaresNF4 records out[i] = Σ_j w[i,j]² (f32 [Out]) for an NF4 weight,
// decoding each value in the kernel and rounding it to w.DType as
// dequantizing it would, so no dense [Out, In] copy is made (DoRA's
// ‖W_o‖² of an NF4 base).
func (e *Dispatcher) RowSquaresNF4(rec *vk.Recorder, out *vk.Tensor, w *quant.DeviceNF4) error {
	if rec == nil {
		return fmt.Errorf("kernels: RowSquaresNF4: recorder is nil: %w", ErrBadInput)
	}
	if w == nil {
		return fmt.Errorf("kernels: RowSquaresNF4: weight is nil: %w", ErrBadInput)
	}
	if err := w.Check(); err != nil {
		return fmt.Errorf("kernels: RowSquaresNF4: %v: %w", err, ErrBadInput)
	}
	if err := checkVector("out", out, w.Out, dtype.F32); err != nil {
		return fmt.Errorf("kernels: RowSquaresNF4: %w", err)
	}
	kern, err := e.dev.ShaderKernel(shaders.ColKey{Op: shaders.RowSquares, D: w.DType, C32: true, NF4: true})
	if err != nil {
		return err
	}
	p := shaders.ColPush{Rows: uint32(w.Out), Cols: uint32(w.In), Blocksize: uint32(w.Blocksize)}
	g := min(w.Out, int(e.dev.Caps().MaxWorkgroupCount[0]), 65535)
	return rec.Dispatch(kern, [3]uint32{uint32(g), 1, 1}, vk.PushBytes(&p), out.Binding(), w.Packed.Binding(), w.Packed.Binding(), w.State.Binding())
}

// DoraNorm records DoRA's reciprocal row norm 1/n [out] and scale c = m/n [out] (both
// f32) of V = W + s·B·A from wsq = ‖W_o‖² (f32 [out]), aw = A·Wᵀ (f32 [r,
// out]), aa = A·Aᵀ (f32 [r, r]), B [out, r] and m [out] of the adapter
// dtype (shaders/dora_norm.comp).
func (e *Dispatcher) DoraNorm(rec *vk.Recorder, n, c, wsq, aw, aa, b, m *vk.Tensor, s float32) error {
	if rec == nil {
		return fmt.Errorf("kernels: DoraNorm: recorder is nil: %w", ErrBadInput)
	}
	if b == nil || b.Released() || b.Rank() != 2 || !b.DType().IsFloat() {
		return fmt.Errorf("kernels: DoraNorm: lora_B %s must be a 2-D float tensor [out, r]: %w", b, ErrBadInput)
	}
	out, r := b.Dim(0), b.Dim(1)
	for _, v := range []struct {
		name string
		t    *vk.Tensor
		n    int
		d    dtype.DType
	}{{"n", n, out, dtype.F32}, {"c", c, out, dtype.F32}, {"‖W‖²", wsq, out, dtype.F32}, {"magnitude", m, out, b.DType()}} {
		if err := checkVector(v.name, v.t, v.n, v.d); err != nil {
			return fmt.Errorf("kernels: DoraNorm: %w", err)
		}
	}
	if aw == nil || aw.Released() || aw.DType() != dtype.F32 || !slices.Equal(aw.Shape(), []int{r, out}) {
		return fmt.Errorf("kernels: DoraNorm: A·Wᵀ %s must be f32[%d %d]: %w", aw, r, out, ErrBadInput)
	}
	if aa == nil || aa.Released() || aa.DType() != dtype.F32 || !slices.Equal(aa.Shape(), []int{r, r}) {
		return fmt.Errorf("kernels: DoraNorm: A·Aᵀ %s must be f32[%d %d]: %w", aa, r, r, ErrBadInput)
	}
	if !finite32(s) {
		return fmt.Errorf("kernels: DoraNorm: scale %v is not finite: %w", s, ErrBadInput)
	}
	kern, err := e.dev.ShaderKernel(shaders.DoraNormKey{D: b.DType()})
	if err != nil {
		return err
	}
	p := shaders.DoraNormPush{Out: uint32(out), R: uint32(r), S: s}
	return rec.Dispatch(kern, [3]uint32{uint32(ceilDiv(out, 64)), 1, 1}, vk.PushBytes(&p),
		n.Binding(), c.Binding(), wsq.Binding(), aw.Binding(), aa.Binding(), b.Binding(), m.Binding())
}

// checkElementwise validates two same-shaped, same-dtype float tensors of
// rank 1 or 2 that do not share memory.
func checkElementwise(rec *vk.Recorder, outName string, out *vk.Tensor, inName string, in *vk.Tensor) error {
	if rec == nil {
		return fmt.Errorf("recorder is nil: %w", ErrBadInput)
	}
	if err := checkOperand(outName, out); err != nil {
		return err
	}
	if err := checkOperand(inName, in); err != nil {
		return err
	}
	if in.Rank() > 2 || in.DType() != out.DType() || !slices.Equal(in.Shape(), out.Shape()) {
		return fmt.Errorf("%s %s must have the shape and dtype of %s %s (rank ≤ 2): %w", outName, out, inName, in, ErrBadInput)
	}
	if vk.Overlaps(out, in) {
		return fmt.Errorf("%s %s shares memory with %s %s: %w", outName, out, inName, in, ErrBadInput)
	}
	return nil
}

func checkVector(name string, t *vk.Tensor, n int, d dtype.DType) error {
	if t == nil || t.Released() {
		return fmt.Errorf("%s is nil or released: %w", name, ErrBadInput)
	}
	if t.Rank() != 1 || t.Dim(0) != n || t.DType() != d {
		return fmt.Errorf("%s %s must be %s[%d]: %w", name, t, d, n, ErrBadInput)
	}
	return nil
}

// rowsCols views a rank-1 or rank-2 tensor as [rows, cols].
func rowsCols(t *vk.Tensor) (int, int) {
	if t.Rank() == 1 {
		return 1, t.Dim(0)
	}
	return t.Dim(0), t.Dim(1)
}

// elementGrid is the (x, y) grid of the strided elementwise kernels (add,
// dropout, colscale): at most addGrid and the device's limit; the shaders
// loop over the rest.
func (e *Dispatcher) elementGrid(rows, cols int) [3]uint32 {
	gx := min(ceilDiv(cols, addWG), addGrid[0], int(e.dev.Caps().MaxWorkgroupCount[0]))
	gy := min(int(e.gridRows(rows)), addGrid[1])
	return [3]uint32{uint32(gx), uint32(gy), 1}
}
