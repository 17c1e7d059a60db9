package main

import (
	"fmt"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	_ "gonum.org/v1/plot/vg/vgimg" // registers png
)

// writePlot draws the loss per step on a log scale into file (PNG).
func writePlot(file, title string, losses []float64) error {
	if len(losses) == 0 {
		return fmt.Errorf("-plot %s: no steps to draw", file)
	}
	pts := make(plotter.XYs, len(losses))
	floor := math.Inf(1)
	for _, l := range losses {
		if l > 0 && l < floor {
			floor = l
		}
	}
	if math.IsInf(floor, 1) {
		floor = 1e-30
	}
	for i, l := range losses {
		// A log axis cannot show 0 (or NaN): such a step is drawn at the
		// smallest positive loss.
		if !(l > 0) || math.IsInf(l, 0) {
			l = floor
		}
		pts[i] = plotter.XY{X: float64(i + 1), Y: l}
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "step"
	p.Y.Label.Text = "loss (mean MSE against the teacher)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Add(plotter.NewGrid())
	line, err := plotter.NewLine(pts)
	if err != nil {
		return fmt.Errorf("-plot %s: %w", file, err)
	}
	p.Add(line)
	if err := p.Save(8*vg.Inch, 4.5*vg.Inch, file); err != nil {
		return fmt.Errorf("-plot %s: %w", file, err)
	}
	return nil
}
