package main

import (
	"flag"
	"fmt"
	"math/bits"
	"strings"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk"
)

// weightFormat is how a case stores its frozen base weights: dense in the
// case's dtype, or NF4 (bitsandbytes layout) dequantized to that dtype
// inside the fused matmul.
type weightFormat struct {
	NF4         bool
	Blocksize   int  // NF4 elements per scale
	DoubleQuant bool // NF4 scales 8-bit quantized, as QLoRA does
}

var denseWeights = weightFormat{}

// nf4Default is -weight nf4 with the default -blocksize and -double-quant.
var nf4Default = weightFormat{NF4: true, Blocksize: quant.DefaultBlocksize, DoubleQuant: true}

// nf4Resize is the hint "-weight nf4" for a dense case c (nf4 builds its
// NF4 twin); none for an NF4 case.
func nf4Resize(c benchCase, nf4 func() benchCase) []resize {
	if c.Weight.NF4 {
		return nil
	}
	return []resize{{"-weight nf4", 0, func(int) benchCase { return nf4() }, nil}}
}

func (f weightFormat) String() string {
	if f.NF4 {
		return "nf4"
	}
	return "dense"
}

// suffix labels an op in the table and in messages: "" or "/nf4".
func (f weightFormat) suffix() string {
	if f.NF4 {
		return "/nf4"
	}
	return ""
}

// weightFlags are the flags that choose the weight formats.
type weightFlags struct {
	formats     *string
	blocksize   *int
	doubleQuant *bool
}

func addWeightFlags(fs *flag.FlagSet) *weightFlags {
	return &weightFlags{
		formats: fs.String("weight", "dense", "comma-separated formats of the frozen base weights W (matmul: of B): dense (the dtype) and nf4 (4-bit NF4, quantized on the device, decoded to the dtype inside the matmul); every case runs in each format, dense first"),
		blocksize: fs.Int("blocksize", quant.DefaultBlocksize,
			fmt.Sprintf("NF4 elements per scale: a power of two in [%d, %d], as bitsandbytes allows", quant.MinBlocksize, quant.MaxBlocksize)),
		doubleQuant: fs.Bool("double-quant", true, "NF4 scales double-quantized to 8 bits, as QLoRA's default (bnb_4bit_use_double_quant); the kernels read them decoded to f32 either way"),
	}
}

// parse returns the chosen formats, dense before nf4 so a comparison can
// pair each NF4 row with the dense row printed before it.
func (w *weightFlags) parse(set map[string]bool) ([]weightFormat, error) {
	var dense, nf4 bool
	for _, s := range splitList(*w.formats) {
		switch s {
		case "dense":
			dense = true
		case "nf4":
			nf4 = true
		default:
			return nil, usagef("-weight %q: want dense, nf4 or dense,nf4", s)
		}
	}
	if !dense && !nf4 {
		return nil, usagef("-weight is empty: want dense, nf4 or dense,nf4")
	}
	bs := *w.blocksize
	if bs < quant.MinBlocksize || bs > quant.MaxBlocksize || bits.OnesCount(uint(bs)) != 1 {
		return nil, usagef("-blocksize %d: want a power of two in [%d, %d]", bs, quant.MinBlocksize, quant.MaxBlocksize)
	}
	if !nf4 {
		for _, f := range []string{"blocksize", "double-quant"} {
			if set[f] {
				return nil, usagef("-%s applies to NF4 weights only: add -weight nf4 (or dense,nf4)", f)
			}
		}
	}
	var fs []weightFormat
	if dense {
		fs = append(fs, denseWeights)
	}
	if nf4 {
		fs = append(fs, weightFormat{NF4: true, Blocksize: bs, DoubleQuant: *w.doubleQuant})
	}
	return fs, nil
}

// weightBytes is the device memory of an [out, in] base weight: out·in
// elements of d, or for NF4 the packed codes (half a byte each) and the
// state the kernels read (16 code-map entries and one f32 scale per block:
// double-quantized scales are decoded at upload, so they take the same room).
func weightBytes(f weightFormat, d dtype.DType, out, in int) float64 {
	n := float64(out) * float64(in)
	if !f.NF4 {
		return n * float64(d.Size())
	}
	nb := (out*in + f.Blocksize - 1) / f.Blocksize
	return float64((out*in+1)/2) + 4*float64(16+nb)
}

// uploadWeight puts the [out, in] weight w (values already rounded to d) on
// the device in format f. It returns the weight and the values the GPU
// multiplies by, for the float64 reference: w itself when dense; for NF4
// the dequantized weight, so validation stays exact up to rounding.
//
// NF4 is quantized on the device: w is uploaded dense, quantized with
// quant.QuantizeOnDevice and the dense copy released before this returns,
// so it is never resident while a case runs. The codes and scales are read
// back and dequantized on the CPU for the reference; with double
// quantization the scales are double-quantized there and the weight
// re-uploaded through quant.UploadNested, which decodes them on the device
// as a QLoRA checkpoint load would.
func uploadWeight(dev *vk.Device, f weightFormat, d dtype.DType, w []float64, out, in int) (lora.Weight, []float64, error) {
	dense, err := dev.TensorFrom(d, ref.ToFloat32(w), out, in)
	if err != nil {
		return lora.Weight{}, nil, err
	}
	if !f.NF4 {
		return lora.Weight{Dense: dense}, w, nil
	}
	defer dense.Release()
	rec, err := dev.NewRecorder()
	if err != nil {
		return lora.Weight{}, nil, err
	}
	defer rec.Release()
	q, err := quant.QuantizeOnDevice(dev, rec, dense, f.Blocksize)
	if err != nil {
		return lora.Weight{}, nil, err
	}
	if err := rec.Submit(); err != nil {
		q.Release()
		return lora.Weight{}, nil, err
	}
	dense.Release()
	host, err := q.Download(f.DoubleQuant)
	if err != nil {
		q.Release()
		return lora.Weight{}, nil, err
	}
	if f.DoubleQuant {
		q.Release()
		if q, err = quant.UploadNested(dev, rec, host); err != nil {
			return lora.Weight{}, nil, err
		}
		if err := rec.Submit(); err != nil {
			q.Release()
			return lora.Weight{}, nil, err
		}
	}
	return lora.Weight{NF4: q}, ref.FromFloat32(quant.Dequantize(host)), nil
}

// releaseWeight frees whichever tensor w holds.
func releaseWeight(w lora.Weight) {
	w.Dense.Release()
	w.NF4.Release()
}

// weightsLabel describes the NF4 format for the table header.
func weightsLabel(f weightFormat) string {
	var b strings.Builder
	fmt.Fprintf(&b, "nf4 = NF4 base weights, blocksize %d", f.Blocksize)
	if f.DoubleQuant {
		b.WriteString(", double-quantized scales")
	}
	return b.String()
}
