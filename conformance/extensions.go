package conformance

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/vklora/vklora/safetensors"
)

// Extensions are one projection's PEFT extensions (docs/CONFORMANCE.md,
// "Extensions"): dropout with the mask the expected values used, a lora_B
// bias, DoRA's magnitude, and a base bias, frozen or trainable. The keys
// may be absent or present with their "off" values.
type Extensions struct {
	Dropout       float64
	Mask          []byte // [M, in of the projection], 1 = kept; nil without dropout
	MaskShape     []int
	LoRABias      *Array // [out]
	Magnitude     *Array // [out]
	Bias          *Array // [out]
	BiasTrainable bool
}

// loadExtensions reads projection p's extension metadata and tensors.
func loadExtensions(c *Case, f *safetensors.File, p *Projection, used map[string]bool) error {
	md, n := c.Metadata, p.Name
	ext := &p.Ext
	if v, ok := md["dropout."+n]; ok {
		d, err := strconv.ParseFloat(v, 64)
		if err != nil || d < 0 || d >= 1 {
			return fmt.Errorf("conformance: metadata dropout.%s = %q is not a probability in [0, 1)", n, v)
		}
		ext.Dropout = d
	}
	if ext.Dropout > 0 {
		mask, shape, err := f.Uint8(n + ".dropout_mask")
		if err != nil {
			return fmt.Errorf("conformance: dropout.%s = %v needs %s.dropout_mask (u8): %w", n, ext.Dropout, n, err)
		}
		if slices.ContainsFunc(mask, func(b byte) bool { return b > 1 }) {
			return fmt.Errorf("conformance: %s.dropout_mask holds a value other than 0 and 1", n)
		}
		ext.Mask, ext.MaskShape = mask, shape
		used[n+".dropout_mask"] = true
	}
	flag := func(key string) (bool, error) {
		switch v := md[key+"."+n]; v {
		case "", "0":
			return false, nil
		case "1":
			return true, nil
		default:
			return false, fmt.Errorf("conformance: metadata %s.%s = %q is not 0 or 1", key, n, v)
		}
	}
	loraBias, err := flag("lora_bias")
	if err != nil {
		return err
	}
	dora, err := flag("dora")
	if err != nil {
		return err
	}
	if loraBias && dora {
		return fmt.Errorf("conformance: projection %s has both lora_bias and dora, which PEFT refuses", n)
	}
	if loraBias {
		if ext.LoRABias, err = loadArray(f, n+".lora_B.bias", c.DType, used); err != nil {
			return err
		}
	}
	if dora {
		if ext.Magnitude, err = loadArray(f, n+".lora_magnitude", c.DType, used); err != nil {
			return err
		}
	}
	switch b := md["bias."+n]; b {
	case "", "none":
	case "frozen", "trainable":
		if ext.Bias, err = loadArray(f, n+".bias", c.DType, used); err != nil {
			return err
		}
		ext.BiasTrainable = b == "trainable"
	default:
		return fmt.Errorf("conformance: metadata bias.%s = %q is not none, frozen or trainable", n, b)
	}
	if m := md["dropout_mask"]; m != "" && m != "per_projection" && m != "shared" {
		return fmt.Errorf("conformance: metadata dropout_mask = %q is not per_projection or shared", m)
	}
	return nil
}

// extGradKeys are the expected gradient keys of p's extensions.
func (p *Projection) extGradKeys() []string {
	var ks []string
	if p.Ext.LoRABias != nil {
		ks = append(ks, "grad."+p.Name+".lora_B.bias")
	}
	if p.Ext.Magnitude != nil {
		ks = append(ks, "grad."+p.Name+".lora_magnitude")
	}
	if p.Ext.BiasTrainable {
		ks = append(ks, "grad."+p.Name+".bias")
	}
	return ks
}

// checkExtShapes checks the extension tensors against the projection's
// out and the mask against M and its input width.
func (p *Projection) checkExtShapes(m, in int) error {
	for _, v := range []struct {
		what string
		a    *Array
	}{{"lora_B.bias", p.Ext.LoRABias}, {"lora_magnitude", p.Ext.Magnitude}, {"bias", p.Ext.Bias}} {
		if v.a != nil && !slices.Equal(v.a.Shape, []int{p.Out()}) {
			return fmt.Errorf("conformance: %s.%s has shape %v, want [%d]", p.Name, v.what, v.a.Shape, p.Out())
		}
	}
	if p.Ext.Mask != nil && !slices.Equal(p.Ext.MaskShape, []int{m, in}) {
		return fmt.Errorf("conformance: %s.dropout_mask has shape %v, want [%d %d]", p.Name, p.Ext.MaskShape, m, in)
	}
	return nil
}
