package main

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/color/palette"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The pictures' size: 600 x 300 points, 800 x 400 pixels at vgimg's 96 dpi.
const (
	plotWidth  vg.Length = 600 // points
	plotHeight vg.Length = 300
)

// stormPlotName is the file name of the refresh storm's redemptions plot.
const stormPlotName = "bench-storm-redemptions.png"

// plotName is the file name of scenario's plot.
func plotName(scenario string) string { return "bench-" + scenario + ".png" }

// writePlots draws the median round of each scenario of rep that has a
// timeline into dir (created if needed): bench-<scenario>.png shows its
// throughput and its p50 and p99 latency over the run's time, and, for
// the refresh storm, bench-storm-redemptions.png its redemptions per
// second against the token endpoint's latency. Each picture's title
// names the scenario, the round, the date, the machine and the build. It
// returns the paths written, in rep.Order.
func writePlots(rep report, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var written []string
	for _, name := range rep.Order {
		s := rep.Scenarios[name]
		if s == nil || len(s.Median.Timeline) == 0 {
			continue
		}
		c := loadPlot(rep, s)
		path := filepath.Join(dir, plotName(name))
		if err := savePNG(c, path); err != nil {
			return written, err
		}
		written = append(written, path)
		if st := s.Median.Storm; st != nil && len(st.Timeline) > 0 {
			path := filepath.Join(dir, stormPlotName)
			if err := savePNG(stormPlot(rep, s), path); err != nil {
				return written, err
			}
			written = append(written, path)
		}
	}
	return written, nil
}

// plotReport writes rep's plots into <out>/plots-<timestamp> (unless out
// is "") and into extra (unless it is "", e.g. docs/img, for
// docs/performance.md), and says where.
func plotReport(rep report, out string, started time.Time, extra string) error {
	dirs := []string{filepath.Join(out, "plots-"+started.Format("20060102-150405"))}
	if out == "" {
		dirs = nil
	}
	if extra != "" {
		dirs = append(dirs, extra)
	}
	var errs []error
	for _, dir := range dirs {
		written, err := writePlots(rep, dir)
		if len(written) > 0 {
			fmt.Fprintf(os.Stderr, "bench: %d plot(s) written to %s\n", len(written), dir)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// loadPlot draws s's median round: requests completed per second above,
// p50 and p99 latency below, over the seconds since the load began.
func loadPlot(rep report, s *scenarioResult) *vgimg.Canvas {
	m := s.Median
	end := timelineEnd(m.Timeline)

	top := newPanel(plotTitle(rep, s, ""), "req/s", end)
	addLine(top, "completed per second", 0, midpoints(m.Timeline, func(iv interval) (float64, bool) { return iv.PerSec, true }), false)
	addLine(top, fmt.Sprintf("run average %.0f", m.RPS), 1, flat(m.RPS, end), true)

	bottom := newPanel("", "latency ms", end)
	bottom.X.Label.Text = "seconds since the load began"
	addLine(bottom, "p50", 0, midpoints(m.Timeline, latencyOf(func(iv interval) float64 { return iv.P50ms })), false)
	addLine(bottom, "p99", 2, midpoints(m.Timeline, latencyOf(func(iv interval) float64 { return iv.P99ms })), false)
	return stack(top, bottom)
}

// stormPlot draws the refresh storm's median round: redemptions and Checks
// completed per second above, the token endpoint's latency below (p50 and
// p99 of the redemptions answered in each interval, against the latency
// it was configured to serve).
func stormPlot(rep report, s *scenarioResult) *vgimg.Canvas {
	m := s.Median
	red := m.Storm.Timeline
	end := max(timelineEnd(m.Timeline), timelineEnd(red))

	top := newPanel(plotTitle(rep, s, "redemptions at the token endpoint"), "per second", end)
	addLine(top, "Checks completed", 0, midpoints(m.Timeline, func(iv interval) (float64, bool) { return iv.PerSec, true }), false)
	addLine(top, "redemptions at the token endpoint", 1, midpoints(red, func(iv interval) (float64, bool) { return iv.PerSec, true }), false)

	bottom := newPanel("", "token endpoint ms", end)
	bottom.X.Label.Text = "seconds since the load began"
	addLine(bottom, "p50", 0, midpoints(red, latencyOf(func(iv interval) float64 { return iv.P50ms })), false)
	addLine(bottom, "p99", 2, midpoints(red, latencyOf(func(iv interval) float64 { return iv.P99ms })), false)
	if d, err := time.ParseDuration(rep.Params.TokenLatency); err == nil {
		addLine(bottom, "configured "+rep.Params.TokenLatency, 1, flat(float64(d)/float64(time.Millisecond), end), true)
	}
	return stack(top, bottom)
}

// plotTitle is a plot's title: the scenario, what is shown unless it is
// "", and the round; then the date, machine and build.
func plotTitle(rep report, s *scenarioResult, what string) string {
	label := labels[s.Name]
	if label == "" {
		label = s.Name
	}
	date := rep.Date
	if t, err := time.Parse(time.RFC3339, rep.Date); err == nil {
		date = t.UTC().Format("2006-01-02 15:04 UTC")
	}
	if what != "" {
		label += ": " + what
	}
	line2 := fmt.Sprintf("%s, %s (%d CPUs)", date, rep.Machine.CPU, rep.Machine.CPUs)
	if rep.Build != "" {
		line2 += ", " + rep.Build
	}
	return fmt.Sprintf("%s, round %d of %d (median by req/s)\n%s", label, s.Median.Round, rep.Params.Rounds, line2)
}

// newPanel is an empty plot whose x axis runs from 0 to end seconds and
// whose y axis starts at 0.
func newPanel(title, ylabel string, end float64) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(9)
	p.Y.Label.Text = ylabel
	p.Y.Label.TextStyle.Font.Size = vg.Points(10)
	p.X.Label.TextStyle.Font.Size = vg.Points(10)
	p.X.Min, p.X.Max = 0, end
	p.X.Tick.Marker, p.Y.Tick.Marker = plainTicks{}, plainTicks{}
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	p.Add(plotter.NewGrid())
	return p
}

// addLine adds a line of colour i named name to p; dashed for reference
// values. Lines without points are left out. The y axis grows to leave
// the legend room above the data.
func addLine(p *plot.Plot, name string, i int, xys plotter.XYs, dashed bool) {
	if len(xys) == 0 {
		return
	}
	l, err := plotter.NewLine(xys)
	if err != nil { // only for NaN or infinite values, which timelines do not hold
		return
	}
	l.Color = plotutil.Color(i)
	l.Width = vg.Points(1.5)
	if dashed {
		l.Color = color.Gray{Y: 110}
		l.Width = vg.Points(1)
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	}
	p.Add(l)
	p.Legend.Add(name, l)
	for _, xy := range xys {
		p.Y.Max = max(p.Y.Max, xy.Y*1.5)
	}
}

// plainTicks are plot's default ticks labelled without trailing zeros
// (25, not 25.00).
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i, t := range ticks {
		if t.Label != "" {
			ticks[i].Label = strconv.FormatFloat(t.Value, 'f', -1, 64)
		}
	}
	return ticks
}

// midpoints are the points (middle of the interval, value) of the
// intervals for which value says ok.
func midpoints(tl []interval, value func(interval) (float64, bool)) plotter.XYs {
	var xys plotter.XYs
	for _, iv := range tl {
		if v, ok := value(iv); ok {
			xys = append(xys, plotter.XY{X: iv.Start + iv.Seconds/2, Y: v})
		}
	}
	return xys
}

// latencyOf reads a latency of the intervals in which something completed
// (an empty interval has none).
func latencyOf(f func(interval) float64) func(interval) (float64, bool) {
	return func(iv interval) (float64, bool) { return f(iv), iv.Count > 0 }
}

// flat is a horizontal line at y from 0 to end.
func flat(y, end float64) plotter.XYs { return plotter.XYs{{X: 0, Y: y}, {X: end, Y: y}} }

// timelineEnd is where a timeline ends, in seconds since the load began.
func timelineEnd(tl []interval) float64 {
	if len(tl) == 0 {
		return 0
	}
	last := tl[len(tl)-1]
	return last.Start + last.Seconds
}

// stack draws top above bottom, their plot areas aligned, on one canvas of
// plotWidth x plotHeight.
func stack(top, bottom *plot.Plot) *vgimg.Canvas {
	c := vgimg.New(plotWidth, plotHeight)
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadX: vg.Millimeter, PadY: vg.Millimeter,
		PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(8)}
	canvases := plot.Align([][]*plot.Plot{{top}, {bottom}}, tiles, dc)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])
	return c
}

// savePNG writes c to path as a paletted PNG image (the pictures are
// committed: see paletted).
func savePNG(c *vgimg.Canvas, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, paletted(c.Image())); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// paletted maps img onto the web-safe palette, each colour to the nearest
// (a plot holds few distinct colours: each is looked up once). As a
// paletted PNG a plot takes about a fifth of the bytes.
func paletted(img image.Image) *image.Paletted {
	b := img.Bounds()
	out := image.NewPaletted(b, palette.WebSafe)
	index := map[color.Color]uint8{}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := img.At(x, y)
			i, ok := index[c]
			if !ok {
				i = uint8(out.Palette.Index(c))
				index[c] = i
			}
			out.SetColorIndex(x, y, i)
		}
	}
	return out
}
