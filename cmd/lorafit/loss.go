package main

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/vk"
)

// The loss is the mean over the step's P outputs (q, k, v, o and the MLP's
// of every layer) of each one's mean squared error against the teacher:
//
//	L = (1/P)·Σ_p mean((Y_p − T_p)²),   dL/dY_p = c_p·(Y_p − T_p),  c_p = 2/(P·numel(Y_p))
//
// all on the device, three elementwise kernels per output: T_p −= Y_p
// (AddTo; the teacher's output is ours to overwrite), then the row sums of
// its squares (RowSquares, f32) and Y_p = −c_p·T_p (ColScale into the
// student's output, which nothing reads after the forward), which becomes
// the upstream gradient. The difference is rounded once to the layer
// dtype, as torch's mse_loss backward rounds Y − T. The row sums of every
// output are copied into one f32 buffer, so a step reads back one tensor.

// lossOp computes the loss and upstream gradients of a step's outputs.
type lossOp struct {
	eng   *lora.Engine
	m     int                // rows (tokens) of every output
	zeros map[int]*vk.Tensor // ColScale's v: f32 zeros [N] per width
	rows  []*vk.Tensor       // RowSquares output [M] per output
	all   *vk.Tensor         // f32 [P·M]: every output's row sums
	numel []int              // elements of each output
}

// newLossOp allocates the buffers for outputs of the given widths, M rows
// each.
func newLossOp(eng *lora.Engine, m int, widths []int) (*lossOp, error) {
	dev := eng.Device()
	l := &lossOp{eng: eng, m: m, zeros: map[int]*vk.Tensor{}}
	var err error
	if l.all, err = dev.NewTensor(dtype.F32, len(widths)*m); err != nil {
		return nil, err
	}
	for _, w := range widths {
		if l.zeros[w] == nil {
			if l.zeros[w], err = dev.TensorFrom(dtype.F32, make([]float32, w), w); err != nil {
				l.release()
				return nil, err
			}
		}
		r, err := dev.NewTensor(dtype.F32, m)
		if err != nil {
			l.release()
			return nil, err
		}
		l.rows = append(l.rows, r)
		l.numel = append(l.numel, m*w)
	}
	return l, nil
}

// record turns ys[p] (student outputs) into the upstream gradients and
// ts[p] (teacher outputs) into T − Y, and gathers the row sums of squares.
// The caller records nothing that reads ys before a barrier (the layers'
// Backward records one first).
func (l *lossOp) record(rec *vk.Recorder, ys, ts []*vk.Tensor) error {
	if len(ys) != len(l.rows) || len(ts) != len(l.rows) {
		return fmt.Errorf("loss: %d outputs and %d targets for %d slots", len(ys), len(ts), len(l.rows))
	}
	k := l.eng.Kernels()
	for p := range ys {
		if err := k.AddTo(rec, ts[p], ys[p], -1); err != nil {
			return fmt.Errorf("loss: output %d: %w", p, err)
		}
	}
	rec.Barrier()
	for p, y := range ys {
		c := 2 / (float64(len(ys)) * float64(l.numel[p]))
		if err := k.RowSquares(rec, l.rows[p], ts[p]); err != nil {
			return fmt.Errorf("loss: output %d: %w", p, err)
		}
		if err := k.ColScale(rec, y, ts[p], l.zeros[y.Dim(1)], 0, float32(-c)); err != nil {
			return fmt.Errorf("loss: output %d: %w", p, err)
		}
	}
	rec.Barrier()
	row := uint64(l.m) * 4
	for p, r := range l.rows {
		if err := rec.Copy(l.all.Buffer().Range(uint64(p)*row, row), r.Binding()); err != nil {
			return fmt.Errorf("loss: output %d: %w", p, err)
		}
	}
	return nil
}

// value reads back the loss of the last submitted record: the mean over
// outputs of each one's mean squared error, summed in float64.
func (l *lossOp) value() (float64, error) {
	sums, err := l.all.Float32()
	if err != nil {
		return 0, err
	}
	total := 0.0
	for p, n := range l.numel {
		s := 0.0
		for _, v := range sums[p*l.m : (p+1)*l.m] {
			s += float64(v)
		}
		total += s / float64(n)
	}
	return total / float64(len(l.numel)), nil
}

func (l *lossOp) release() {
	if l == nil {
		return
	}
	for _, z := range l.zeros {
		z.Release()
	}
	for _, r := range l.rows {
		r.Release()
	}
	l.all.Release()
}
