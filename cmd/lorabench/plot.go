package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	_ "gonum.org/v1/plot/vg/vgimg" // registers png
	_ "gonum.org/v1/plot/vg/vgsvg" // registers svg
)

// -plot FILE: a horizontal bar chart of one metric, one bar per validated
// row in report order (top to bottom), coloured by weight format.

// plotMetric is one quantity -plot-metric can chart.
type plotMetric struct {
	axis  string
	value func(r *result) float64
}

var plotMetrics = map[string]plotMetric{
	"tflops": {"TFLOP/s (at the median time)", func(r *result) float64 { return r.TFLOPs }},
	"ms":     {"ms (median)", func(r *result) float64 { return r.MsMedian }},
	"peak":   {"peak extra MiB of one step", func(r *result) float64 { return r.PeakExtraMiB }},
}

// plotFormats are the file extensions -plot writes.
var plotFormats = []string{".png", ".svg"}

// checkPlot rejects a -plot file or metric before anything runs, so a long
// sweep does not end without its chart.
func checkPlot(file, metric string) error {
	if _, ok := plotMetrics[metric]; !ok {
		return usagef("-plot-metric %q: want tflops, ms or peak", metric)
	}
	if file == "" {
		return nil
	}
	ext := strings.ToLower(filepath.Ext(file))
	if !slices.Contains(plotFormats, ext) {
		return usagef("-plot %q: want a .png or .svg file", file)
	}
	if st, err := os.Stat(filepath.Dir(file)); err != nil || !st.IsDir() {
		return usagef("-plot %q: directory %s does not exist", file, filepath.Dir(file))
	}
	return nil
}

// weightColors colours the bars by weight format.
var weightColors = map[string]color.Color{
	"dense": color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	"nf4":   color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
}

// writePlot charts metric over the validated rows into file (.png or .svg).
func writePlot(file, metric, device string, rows []result) error {
	m := plotMetrics[metric]
	var shown []result
	for _, r := range rows {
		if r.Validated {
			shown = append(shown, r)
		}
	}
	if len(shown) == 0 {
		return fmt.Errorf("-plot %s: no validated rows to chart", file)
	}
	p := plot.New()
	p.Title.Text = "lorabench on " + device
	p.X.Label.Text = m.axis
	p.X.Min = 0
	n := len(shown)
	labels := make([]string, n)
	legend := map[string]bool{}
	for i, r := range shown {
		// The first row goes on top: bar n-1-i.
		y := n - 1 - i
		labels[y] = fmt.Sprintf("%s %s %s %dx%dx%d", r.label(), r.DType, r.Form, r.M, r.N, r.K)
		bar, err := plotter.NewBarChart(plotter.Values{m.value(&r)}, vg.Points(14))
		if err != nil {
			return fmt.Errorf("-plot: %w", err)
		}
		bar.Horizontal, bar.XMin = true, float64(y)
		bar.LineStyle.Width = 0
		bar.Color = weightColors[r.Weight]
		p.Add(bar)
		if !legend[r.Weight] {
			legend[r.Weight] = true
			p.Legend.Add(r.Weight, bar)
		}
	}
	p.NominalY(labels...)
	// Room on the right for the legend.
	p.X.Max = 1.3 * p.X.Max
	p.Legend.Top = true
	height := vg.Length(n)*vg.Points(20) + 1.5*vg.Inch
	if err := p.Save(8*vg.Inch, height, file); err != nil {
		return fmt.Errorf("-plot: %w", err)
	}
	return nil
}
