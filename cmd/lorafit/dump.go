package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/vklora/vklora/hf"
	"github.com/vklora/vklora/safetensors"
	"github.com/vklora/vklora/vk"
)

// dumpRows bounds the rows of -dump's batch: enough for a relative error,
// small enough that a llama3-8b layer's dump stays a few MiB.
const dumpRows = 64

// dumpSalt keeps the dump's batch apart from the training batches.
const dumpSalt = 0x64756d70 // "dump"

// dump runs a fresh batch through the trained student (dropout off, as
// model.eval() does) and the teacher and writes, in the layer dtype:
//
//	x                               [rows, hidden]       QKV's and the MLP's input
//	z                               [rows, heads·head_dim] O's input
//	student.P, teacher.P            the output of projection P (q, k, v, o), e.g.
//	                                student.model.layers.0.self_attn.q_proj
//	student.model.layers.i.mlp, teacher.model.layers.i.mlp   the MLP's output
//
// with metadata format "pt", lorafit.layers ("0,1"), lorafit.dtype.
// scripts/gpu/lorafit_peft.py compares PEFT's outputs with the student's.
func (tr *trainer) dump(rec *vk.Recorder, path string, seed uint64) error {
	cfg := tr.m.Config
	rows := min(dumpRows, tr.pool.m)
	pool, err := newInputPool(tr.eng.Device(), tr.m.DType, rows, cfg.HiddenSize, cfg.NumAttentionHeads*cfg.HeadDim, 1, seed^dumpSalt)
	if err != nil {
		return err
	}
	defer pool.release()
	for _, l := range tr.m.Layers {
		for _, p := range l.Projections() {
			if p.Dropout != nil {
				p.Dropout.Eval = true
			}
		}
	}
	b, err := pool.get(0)
	if err != nil {
		return err
	}
	fw, err := tr.forward(rec, b)
	if err != nil {
		return err
	}
	// The outputs are held by rec and freed at Submit: copy them to tensors
	// of our own first.
	var keep []*vk.Tensor
	defer func() {
		for _, t := range keep {
			t.Release()
		}
	}()
	rec.Barrier()
	all := append(append([]*vk.Tensor{b.x, b.z}, fw.ys...), fw.ts...)
	for _, t := range all {
		c, err := tr.eng.Device().NewTensor(t.DType(), t.Shape()...)
		if err != nil {
			return err
		}
		keep = append(keep, c)
		if err := rec.Copy(c.Binding(), t.Binding()); err != nil {
			return err
		}
	}
	if err := rec.Submit(); err != nil {
		return err
	}
	f := safetensors.New()
	var layers []string
	names := []string{"x", "z"}
	for who := range 2 {
		for _, l := range tr.m.Layers {
			if who == 0 {
				layers = append(layers, strconv.Itoa(l.Index))
			}
			pre := [...]string{"student.", "teacher."}[who]
			for _, m := range []hf.Module{hf.Q, hf.K, hf.V, hf.O} {
				names = append(names, pre+hf.Prefix(l.Index, m))
			}
			names = append(names, pre+strings.TrimSuffix(hf.Prefix(l.Index, hf.Gate), ".gate_proj"))
		}
	}
	for i, t := range keep {
		xs, err := t.Float32()
		if err != nil {
			return err
		}
		if err := f.PutFloat32(names[i], t.DType(), t.Shape(), xs); err != nil {
			return err
		}
	}
	f.Metadata = map[string]string{"format": "pt", "lorafit.layers": strings.Join(layers, ","), "lorafit.dtype": tr.m.DType.String()}
	if err := safetensors.WriteFile(path, f); err != nil {
		return fmt.Errorf("-dump %s: %w", path, err)
	}
	return nil
}
