package conformance

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/vklora/vklora/activation"
	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/safetensors"
)

// Case is one conformance file.
type Case struct {
	Path        string
	Op          string // matmul_lora, lora_o, lora_qkv, lora_mlp
	Activation  string // lora_mlp only: swiglu, geglu, geglu_tanh
	DType       dtype.DType
	Projections []string // in the op's order, e.g. q, k, v
	Proj        map[string]*Projection
	Inputs      map[string]*Array  // "X", and "grad.Y" or "grad.Q" ... for training ops
	Expect      map[string]*Array  // "Y", "grad.X", "grad.q.lora_A", ... (no "expect." prefix)
	Tol         map[string]float64 // largest allowed RelErr, by Expect key
	TorchErr    map[string]float64 // plain PyTorch's error in the case dtype, informative
	Metadata    map[string]string  // the raw file metadata
}

// Projection is one LoRA-adapted linear layer: lin(X) = X·Wᵀ + s·(X·Aᵀ)·Bᵀ.
type Projection struct {
	Name   string
	Scale  float64
	Quant  string           // none, nf4, nf4-dq
	Weight *Array           // dense W [out,in] when Quant is none
	NF4    *quant.NF4Weight // packed W when Quant is nf4 or nf4-dq
	A, B   *Array           // A [r,in], B [out,r]
	Ext    Extensions       // PEFT's dropout, lora_B bias, DoRA and base bias
}

// Array is a stored tensor, values widened exactly to float32.
type Array struct {
	Shape []int
	DType dtype.DType // the stored type
	Data  []float32
}

// Out is the projection's output width (rows of W and B).
func (p *Projection) Out() int { return p.B.Shape[0] }

// In is the projection's input width (columns of W and A).
func (p *Projection) In() int { return p.A.Shape[1] }

// Rank is the LoRA rank r.
func (p *Projection) Rank() int { return p.A.Shape[0] }

// Dense returns W [out,in] row-major in the case dtype's values: the stored
// dense weight, or the NF4 weight decoded exactly as the expected values
// were computed. The result is a fresh slice.
func (p *Projection) Dense() []float32 {
	if p.NF4 != nil {
		return quant.Dequantize(p.NF4)
	}
	return append([]float32(nil), p.Weight.Data...)
}

// projectionsOf names each op's projections in file order.
var projectionsOf = map[string][]string{
	"matmul_lora": {"w"},
	"lora_o":      {"o"},
	"lora_qkv":    {"q", "k", "v"},
	"lora_mlp":    {"gate", "up", "down"},
}

// Load reads and validates the case file at path.
func Load(path string) (*Case, error) {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := FromFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Path = path
	return c, nil
}

// FromFile builds and validates a case from a parsed file.
func FromFile(f *safetensors.File) (*Case, error) {
	md := f.Metadata
	c := &Case{
		Op: md["op"], Activation: md["activation"], Metadata: md,
		Proj: map[string]*Projection{}, Inputs: map[string]*Array{}, Expect: map[string]*Array{},
		Tol: map[string]float64{}, TorchErr: map[string]float64{},
	}
	want, ok := projectionsOf[c.Op]
	if !ok {
		return nil, fmt.Errorf("conformance: metadata op %q is not matmul_lora, lora_o, lora_qkv or lora_mlp", c.Op)
	}
	if _, err := activation.Parse(c.Activation); (c.Op == "lora_mlp") != (err == nil) {
		return nil, fmt.Errorf("conformance: op %s with activation %q (lora_mlp needs swiglu, geglu or geglu_tanh; others none)", c.Op, c.Activation)
	}
	var err error
	if c.DType, err = dtype.Parse(md["dtype"]); err != nil || !c.DType.IsFloat() {
		return nil, fmt.Errorf("conformance: metadata dtype %q is not f32, f16 or bf16", md["dtype"])
	}
	if got := md["projections"]; got != strings.Join(want, ",") {
		return nil, fmt.Errorf("conformance: op %s needs projections %q, metadata says %q", c.Op, strings.Join(want, ","), got)
	}
	c.Projections = want
	used := map[string]bool{}
	for _, name := range want {
		p, err := loadProjection(f, c.DType, name, used)
		if err != nil {
			return nil, err
		}
		if err := loadExtensions(c, f, p, used); err != nil {
			return nil, err
		}
		c.Proj[name] = p
	}
	if c.Inputs["X"], err = loadArray(f, "X", c.DType, used); err != nil {
		return nil, err
	}
	if err := c.loadOutputs(f, used); err != nil {
		return nil, err
	}
	var extra []string
	for name := range f.Tensors {
		if !used[name] {
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return nil, fmt.Errorf("conformance: op %s: unexpected tensors %v", c.Op, extra)
	}
	return c, c.checkShapes()
}

// loadArray reads a float tensor that must have dtype d (0: any float type).
func loadArray(f *safetensors.File, name string, d dtype.DType, used map[string]bool) (*Array, error) {
	t, err := f.Get(name)
	if err != nil {
		return nil, fmt.Errorf("conformance: %w", err)
	}
	got, err := safetensors.ToDType(t.DType)
	if err != nil || !got.IsFloat() || (d != 0 && got != d) {
		return nil, fmt.Errorf("conformance: tensor %q has dtype %s, want %v", name, t.DType, d)
	}
	data, shape, err := f.Float32(name)
	if err != nil {
		return nil, fmt.Errorf("conformance: %w", err)
	}
	used[name] = true
	return &Array{Shape: shape, DType: got, Data: data}, nil
}

func parseFloatMeta(md map[string]string, key string) (float64, error) {
	s, ok := md[key]
	if !ok {
		return 0, fmt.Errorf("conformance: metadata %s missing", key)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("conformance: metadata %s = %q is not a finite number", key, s)
	}
	return v, nil
}

func loadProjection(f *safetensors.File, d dtype.DType, name string, used map[string]bool) (*Projection, error) {
	p := &Projection{Name: name, Quant: f.Metadata["quant."+name]}
	var err error
	if p.Scale, err = parseFloatMeta(f.Metadata, "scale."+name); err != nil {
		return nil, err
	}
	if p.A, err = loadArray(f, name+".lora_A", d, used); err != nil {
		return nil, err
	}
	if p.B, err = loadArray(f, name+".lora_B", d, used); err != nil {
		return nil, err
	}
	switch p.Quant {
	case "none":
		p.Weight, err = loadArray(f, name+".weight", d, used)
		return p, err
	case "nf4", "nf4-dq":
		if p.NF4, err = quant.LoadNF4(f, name); err != nil {
			return nil, fmt.Errorf("conformance: projection %s: %w", name, err)
		}
		if nested := p.NF4.State.Nested != nil; nested != (p.Quant == "nf4-dq") {
			return nil, fmt.Errorf("conformance: projection %s: quant.%s = %s but the quant state nested = %v", name, name, p.Quant, nested)
		}
		if p.NF4.State.DType != d {
			return nil, fmt.Errorf("conformance: projection %s: NF4 dtype %v, case dtype %v", name, p.NF4.State.DType, d)
		}
		for key := range f.Tensors {
			if strings.HasPrefix(key, name+".weight") {
				used[key] = true
			}
		}
		return p, nil
	}
	return nil, fmt.Errorf("conformance: metadata quant.%s = %q is not none, nf4 or nf4-dq", name, p.Quant)
}
