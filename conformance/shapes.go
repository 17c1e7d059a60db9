package conformance

import (
	"fmt"
	"strings"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/safetensors"
)

// outputs names the op's outputs and the projection each comes from; the
// mlp's Y is the down projection's.
func (c *Case) outputs() map[string]string {
	switch c.Op {
	case "lora_qkv":
		return map[string]string{"Q": "q", "K": "k", "V": "v"}
	case "lora_mlp":
		return map[string]string{"Y": "down"}
	}
	return map[string]string{"Y": c.Projections[0]}
}

// Train reports whether the case has a backward pass (all ops but matmul_lora).
func (c *Case) Train() bool { return c.Op != "matmul_lora" }

// M is the number of rows of X.
func (c *Case) M() int { return c.Inputs["X"].Shape[0] }

// loadOutputs reads grad.* inputs and expect.* with their tolerances.
func (c *Case) loadOutputs(f *safetensors.File, used map[string]bool) error {
	keys := []string{}
	for out := range c.outputs() {
		keys = append(keys, out)
		if c.Train() {
			a, err := loadArray(f, "grad."+out, c.DType, used)
			if err != nil {
				return err
			}
			c.Inputs["grad."+out] = a
		}
	}
	if c.Train() {
		keys = append(keys, "grad.X")
		for _, p := range c.Projections {
			keys = append(keys, "grad."+p+".lora_A", "grad."+p+".lora_B")
			keys = append(keys, c.Proj[p].extGradKeys()...)
		}
	}
	for _, k := range keys {
		a, err := loadArray(f, "expect."+k, 0, used)
		if err != nil {
			return err
		}
		if a.DType != dtype.F32 {
			return fmt.Errorf("conformance: tensor %q has dtype %v, want F32", "expect."+k, a.DType)
		}
		c.Expect[k] = a
		if c.Tol[k], err = parseFloatMeta(c.Metadata, "tol.expect."+k); err != nil {
			return err
		}
		if c.TorchErr[k], err = parseFloatMeta(c.Metadata, "torch_err.expect."+k); err != nil {
			return err
		}
	}
	for k := range c.Metadata {
		if name, ok := strings.CutPrefix(k, "tol.expect."); ok && c.Expect[name] == nil {
			return fmt.Errorf("conformance: metadata %s names no expected tensor of op %s", k, c.Op)
		}
	}
	return nil
}

func is2D(a *Array, rows, cols int) bool {
	return len(a.Shape) == 2 && a.Shape[0] == rows && a.Shape[1] == cols
}

// checkShapes ties every shape to X, A and B: A [r,in], B [out,r],
// W [out,in], and for the mlp gate/up [I,H], down [H,I].
func (c *Case) checkShapes() error {
	x := c.Inputs["X"]
	if len(x.Shape) != 2 || x.Shape[0] < 1 || x.Shape[1] < 1 {
		return fmt.Errorf("conformance: X has shape %v, want [M, in] with M, in >= 1", x.Shape)
	}
	m, h := x.Shape[0], x.Shape[1]
	for _, name := range c.Projections {
		p := c.Proj[name]
		if len(p.A.Shape) != 2 || len(p.B.Shape) != 2 || p.A.Shape[0] < 1 || p.A.Shape[0] != p.B.Shape[1] || p.B.Shape[0] < 1 {
			return fmt.Errorf("conformance: %s.lora_A %v and %s.lora_B %v are not [r,in] and [out,r] with r >= 1", name, p.A.Shape, name, p.B.Shape)
		}
		if p.Weight != nil && !is2D(p.Weight, p.Out(), p.In()) {
			return fmt.Errorf("conformance: %s.weight has shape %v, want [out,in] = [%d,%d] from lora_B %v and lora_A %v",
				name, p.Weight.Shape, p.Out(), p.In(), p.B.Shape, p.A.Shape)
		}
		if p.NF4 != nil && p.NF4.State.Shape != [2]int{p.Out(), p.In()} {
			return fmt.Errorf("conformance: %s NF4 quant state shape %v, want [out,in] = [%d,%d] from lora_B %v and lora_A %v",
				name, p.NF4.State.Shape, p.Out(), p.In(), p.B.Shape, p.A.Shape)
		}
	}
	for _, name := range c.Projections {
		p := c.Proj[name]
		if err := p.checkExtShapes(m, p.In()); err != nil {
			return err
		}
	}
	if c.Op == "lora_mlp" {
		g, u, d := c.Proj["gate"], c.Proj["up"], c.Proj["down"]
		if g.In() != h || u.In() != h || g.Out() != u.Out() || d.In() != g.Out() || d.Out() != h {
			return fmt.Errorf("conformance: mlp with X %v needs gate, up [I,%d] and down [%d,I]; got gate [%d,%d], up [%d,%d], down [%d,%d]",
				x.Shape, h, h, g.Out(), g.In(), u.Out(), u.In(), d.Out(), d.In())
		}
	} else {
		for _, name := range c.Projections {
			if p := c.Proj[name]; p.In() != h {
				return fmt.Errorf("conformance: projection %s has in = %d (lora_A %v), X has shape %v", name, p.In(), p.A.Shape, x.Shape)
			}
		}
	}
	for out, proj := range c.outputs() {
		w := c.Proj[proj].Out()
		for _, key := range []string{"grad." + out} {
			if a := c.Inputs[key]; a != nil && !is2D(a, m, w) {
				return fmt.Errorf("conformance: %s has shape %v, want [M,%d] = [%d,%d]", key, a.Shape, w, m, w)
			}
		}
		if a := c.Expect[out]; !is2D(a, m, w) {
			return fmt.Errorf("conformance: expect.%s has shape %v, want [%d,%d]", out, a.Shape, m, w)
		}
	}
	if !c.Train() {
		return nil
	}
	if a := c.Expect["grad.X"]; !is2D(a, m, h) {
		return fmt.Errorf("conformance: expect.grad.X has shape %v, want X's %v", a.Shape, x.Shape)
	}
	for _, name := range c.Projections {
		p := c.Proj[name]
		if a := c.Expect["grad."+name+".lora_A"]; !is2D(a, p.Rank(), p.In()) {
			return fmt.Errorf("conformance: expect.grad.%s.lora_A has shape %v, want lora_A's %v", name, a.Shape, p.A.Shape)
		}
		if a := c.Expect["grad."+name+".lora_B"]; !is2D(a, p.Out(), p.Rank()) {
			return fmt.Errorf("conformance: expect.grad.%s.lora_B has shape %v, want lora_B's %v", name, a.Shape, p.B.Shape)
		}
	}
	return nil
}
