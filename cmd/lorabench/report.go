package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/vklora/vklora/vk"
)

// result is one row of the report; with -json, one line.
type result struct {
	Op       string  `json:"op"`
	Device   string  `json:"device"`
	DType    string  `json:"dtype"`
	Form     string  `json:"form"`
	M        int     `json:"M"`
	N        int     `json:"N"`
	K        int     `json:"K"`
	MsMedian float64 `json:"ms_median"`
	MsMin    float64 `json:"ms_min"`
	MsMax    float64 `json:"ms_max"`
	// MsTimes is every timed repeat in recording order: a trend (clocks
	// ramping up, throttling) shows here and not in the median.
	MsTimes   []float64 `json:"ms_times"`
	GFLOPs    float64   `json:"gflops"` // GFLOP/s at the median time
	GBs       float64   `json:"gbs"`    // GB/s at the median time
	FLOPs     float64   `json:"flop"`   // of one run
	Bytes     float64   `json:"bytes"`  // of one run (minimum device-memory traffic)
	Reps      int       `json:"reps"`
	RelErr    jsonNum   `json:"rel_err"` // null when not finite (NaN output)
	Tol       float64   `json:"tol"`
	Validated bool      `json:"validated"`
	// PeakExtraMiB is the device memory one step allocates above what was
	// allocated before it (outputs, saved contexts, temporaries), measured
	// on one untimed step (what scripts/torch_reference.py reports as
	// step_peak_extra_MiB for PyTorch).
	PeakExtraMiB float64 `json:"peak_extra_MiB"`
	// PeakTotalMiB is the device memory allocated at that step's peak: what
	// the case holds (base weights, adapters, inputs) plus PeakExtraMiB.
	PeakTotalMiB float64 `json:"peak_total_MiB"`
	TFLOPs       float64 `json:"tflops"` // TFLOP/s at the median time
	// FracPeak is TFLOPs over the device's measured peak for the row
	// (PeakBasis: coopmat_<dtype> or fma_f32), FracBW GBs over its copy
	// bandwidth; see peakDoc.annotate (peak.go). Absent with -no-peak.
	FracPeak  jsonNum `json:"frac_peak,omitempty"`
	FracBW    jsonNum `json:"frac_bw,omitempty"`
	PeakBasis string  `json:"peak_basis,omitempty"`
	// Weight is the base weights' format: "dense" or "nf4" (with its
	// blocksize and whether the scales are double-quantized); WeightMiB
	// their device memory, held by the case, not part of PeakExtraMiB.
	Weight      string  `json:"weight"`
	Blocksize   int     `json:"blocksize,omitempty"`
	DoubleQuant bool    `json:"double_quant,omitempty"`
	WeightMiB   float64 `json:"weight_MiB"`
	// NF4 rows whose dense twin (same op, dtype, form and shape) ran and
	// validated before them: ms_median, peak_extra_MiB and peak_total_MiB
	// divided by the dense row's (omitted where that is zero).
	MsVsDense        jsonNum `json:"ms_vs_dense,omitempty"`
	PeakVsDense      jsonNum `json:"peak_vs_dense,omitempty"`
	PeakTotalVsDense jsonNum `json:"peak_total_vs_dense,omitempty"`
	// Layer ops only: the preset ("quick", "custom"), pass and shape.
	Preset string `json:"preset,omitempty"`
	Pass   string `json:"pass,omitempty"`
	Hidden int    `json:"hidden,omitempty"`
	Inter  int    `json:"inter,omitempty"`
	Q      int    `json:"q,omitempty"`
	KV     int    `json:"kv,omitempty"`
	R      int    `json:"r,omitempty"`
	Act    string `json:"act,omitempty"`
	// Layer ops with PEFT's extensions on every projection (bench
	// -dropout, -lora-bias, -dora); the form names them too.
	Dropout  float64 `json:"dropout,omitempty"`
	LoRABias bool    `json:"lora_bias,omitempty"`
	DoRA     bool    `json:"dora,omitempty"`
	// Sweep is the engine switch of a -sweep row, "NAME=VALUE" (sweep.go).
	Sweep string `json:"sweep,omitempty"`
}

// jsonNum encodes a non-finite float as null (encoding/json rejects them).
type jsonNum float64

func (x jsonNum) MarshalJSON() ([]byte, error) {
	f := float64(x)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

func newResult(c benchCase, dev vk.DeviceInfo) result {
	r := result{Op: c.Op, Device: dev.Name, DType: c.DType.String(), Form: c.Form,
		M: c.M, N: c.N, K: c.K, FLOPs: c.FLOPs, Bytes: c.Bytes, Preset: c.Preset,
		Weight: c.Weight.String(), WeightMiB: c.WeightBytes / (1 << 20)}
	if c.Weight.NF4 {
		r.Blocksize, r.DoubleQuant = c.Weight.Blocksize, c.Weight.DoubleQuant
	}
	if l := c.Layer; l != nil {
		s := l.Shape
		r.Preset, r.Pass, r.Hidden, r.R = s.Name, l.Pass, s.H, s.R
		switch {
		case isMLPOp(c.Op) || c.Op == "matmul_lora":
			r.Inter = s.I
		case c.Op == "qkv":
			r.Q, r.KV = s.Q, s.KV
		case c.Op == "o":
			r.Q = s.Q
		}
		if isMLPOp(c.Op) {
			r.Act = s.Act.String()
		}
		r.Dropout, r.LoRABias, r.DoRA = l.Ext.Dropout, l.Ext.LoRABias, l.Ext.DoRA
	}
	return r
}

// label is the op as the table shows it: "mlp", or "mlp/nf4" on NF4 weights.
func (r result) label() string {
	if r.Weight == "nf4" {
		return r.Op + "/nf4"
	}
	return r.Op
}

func (r *result) setStats(st Stats, c benchCase) {
	r.MsMedian, r.MsMin, r.MsMax, r.Reps, r.MsTimes = st.Median, st.Min, st.Max, st.Reps, st.Times
	if st.Median > 0 {
		r.GFLOPs = c.FLOPs / (st.Median * 1e-3) / 1e9
		r.GBs = c.Bytes / (st.Median * 1e-3) / 1e9
		r.TFLOPs = r.GFLOPs / 1e3
	}
}

// reporter prints results as they come: a fixed-width table for people (so
// rows appear as soon as they are measured) or JSON lines for machines.
type reporter struct {
	w      io.Writer
	json   bool
	dev    vk.DeviceInfo
	header bool
	enc    *json.Encoder
	format string // of a table row, with the widths of the op and form columns
	nf4    string // the header's note on NF4 weights; "" when no case has them
	twins  twins  // NF4 rows and their dense twins
	rows   []result
}

// newReporter prepares the report of cases: the op and form columns are as
// wide as the widest of them.
func newReporter(w io.Writer, asJSON bool, dev vk.DeviceInfo, cases []benchCase) *reporter {
	opW, formW := 7, 4
	nf4 := ""
	for _, c := range cases {
		opW, formW = max(opW, len(c.label())), max(formW, len(c.Form))
		if c.Weight.NF4 {
			nf4 = weightsLabel(c.Weight)
		}
	}
	format := fmt.Sprintf("%%-%ds %%-5s %%-%ds %%6s %%6s %%6s %%10s %%10s %%10s %%8s %%9s %%8s %%9s %%9s %%9s\n", opW, formW)
	return &reporter{w: w, json: asJSON, dev: dev, enc: json.NewEncoder(w), format: format, nf4: nf4, twins: twins{}}
}

func (r *reporter) row(res result) {
	r.twins.pair(&res)
	r.rows = append(r.rows, res)
	if r.json {
		r.enc.Encode(res) //nolint:errcheck // a failing stdout fails every later write too
		return
	}
	if !r.header {
		r.header = true
		fmt.Fprintf(r.w, "device: %s\n", r.dev)
		fmt.Fprintf(r.w, "GPU timestamps, median of reps after warm-up; matmul FLOP = 2·M·N·K, bytes = (M·K+K·N+M·N)·sizeof(dtype)\n")
		fmt.Fprintf(r.w, "layer ops (form = preset pass; M tokens, N K = out in, for mlp H I): FLOP per projection fwd 2·M·in·out + 2·M·r·(in+out), bwd 2·M·in·out + 4·M·r·(in+out);\n")
		fmt.Fprintf(r.w, "peak MiB = device memory one step allocates above what was allocated before it; rel err of the worst output (layers: on min(M, -val-rows) rows)\n")
		if r.nf4 != "" {
			fmt.Fprintf(r.w, "op/%s, quantized on the device from the dense draw (bytes: ½ per weight + 4 per scale); validated against the dequantized weights\n", r.nf4)
		}
		fmt.Fprintf(r.w, "frac peak = TFLOP/s over this device's measured peak (lorabench peak): cooperative-matrix rate of the dtype where the row runs on them, else fp32 FMA\n")
		fmt.Fprintf(r.w, r.format, "op", "dtype", "form", "M", "N", "K", "ms median", "ms min", "ms max", "TFLOP/s", "GFLOP/s", "GB/s", "peak MiB", "rel err", "frac peak")
	}
	relErr := fmt.Sprintf("%.2g", float64(res.RelErr))
	if !res.Validated {
		fmt.Fprintf(r.w, r.format, res.label(), res.DType, res.Form, itoa(res.M), itoa(res.N), itoa(res.K),
			"FAILED", "-", "-", "-", "-", "-", mib(res.PeakExtraMiB), relErr, "-")
		return
	}
	fmt.Fprintf(r.w, r.format, res.label(), res.DType, res.Form, itoa(res.M), itoa(res.N), itoa(res.K),
		ms(res.MsMedian), ms(res.MsMin), ms(res.MsMax),
		fmt.Sprintf("%.3f", res.GFLOPs/1e3), num(res.GFLOPs), num(res.GBs), mib(res.PeakExtraMiB), relErr, fracString(res.FracPeak))
}

// done ends the report: in the table, the NF4 vs dense comparisons.
func (r *reporter) done() {
	if !r.json {
		r.twins.write(r.w)
	}
}

// num prints a rate with about three significant digits.
func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func itoa(v int) string { return strconv.Itoa(v) }

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.4f", v)
}

// mib prints a MiB count: three significant digits below 100, else whole MiB.
func mib(v float64) string {
	if v < 100 {
		return fmt.Sprintf("%.3g", v)
	}
	return fmt.Sprintf("%.0f", v)
}
