package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"image/color"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/tune-dev/tune/checkpoints"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// StepRecord is one line of metrics.jsonl per optimizer step.
type StepRecord struct {
	Step       int     `json:"step"`
	Epoch      int     `json:"epoch"`
	Loss       float64 `json:"loss"`
	LR         float64 `json:"lr"`
	GradNorm   float64 `json:"grad_norm"`
	Tokens     int     `json:"tokens"`       // trained: tokens with a label
	TokensPerS float64 `json:"tokens_per_s"` // trained tokens a second
	// Processed counts every token the model ran through (masked prompt
	// tokens too, padding not); its rate is the speed of the machine.
	Processed     int     `json:"processed_tokens"`
	ProcessedPerS float64 `json:"processed_tokens_per_s"`
	StepTimeS     float64 `json:"step_time_s"`
	PeakMemBytes  int64   `json:"peak_mem_bytes"`
}

// EvalRecord is one line of metrics.jsonl per evaluation.
type EvalRecord struct {
	Step           int     `json:"step"`
	EvalLoss       float64 `json:"eval_loss"`
	EvalPerplexity float64 `json:"eval_perplexity"`
	EvalTokens     int     `json:"eval_tokens"`
}

// metricsFile appends records to metrics.jsonl.
type metricsFile struct {
	f      *os.File
	closed bool
}

// openMetrics opens metrics.jsonl for appending. A fresh run starts it empty;
// a resumed run keeps the records up to its checkpoint's step and drops the
// later ones, which the interrupted run wrote and this one writes again. The
// kept part is written atomically, so a kill now loses no history.
func openMetrics(path string, fromStep int) (*metricsFile, error) {
	var keep []byte
	if fromStep > 0 {
		old, err := os.ReadFile(path)
		if err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		for _, line := range bytes.SplitAfter(old, []byte("\n")) {
			var r struct{ Step int }
			if json.Unmarshal(line, &r) == nil && r.Step <= fromStep {
				keep = append(keep, line...)
			}
		}
	}
	err := checkpoints.WriteFileAtomic(path, func(w io.Writer) error {
		_, err := w.Write(keep)
		return err
	})
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, err
	}
	return &metricsFile{f: f}, nil
}

func (m *metricsFile) Write(rec any) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = m.f.Write(append(b, '\n'))
	return err
}

func (m *metricsFile) Close() error {
	if m.closed {
		return nil
	}
	m.closed = true
	return m.f.Close()
}

// peakRSS is the process's peak resident memory (VmHWM on Linux), or the Go
// runtime's total from the OS elsewhere.
func peakRSS() int64 { return StatusBytes("VmHWM:") }

// StatusBytes reads a kB figure of this process's /proc/self/status (VmHWM:,
// VmRSS:, RssFile: ...) in bytes; where there is none, the Go runtime's
// total from the OS.
func StatusBytes(key string) int64 {
	if f, err := os.Open("/proc/self/status"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), key); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				if err == nil {
					return kb * 1024
				}
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.Sys)
}

// PlotLoss draws the training loss (and evaluation loss, if any) of a
// metrics.jsonl as a PNG.
func PlotLoss(metricsPath, pngPath string) error {
	b, err := os.ReadFile(metricsPath)
	if err != nil {
		return err
	}
	var trainPts, evalPts plotter.XYs
	for _, line := range bytes.Split(b, []byte("\n")) {
		var r struct {
			Step     int
			Loss     *float64 `json:"loss"`
			EvalLoss *float64 `json:"eval_loss"`
		}
		if json.Unmarshal(line, &r) != nil {
			continue
		}
		if r.Loss != nil {
			trainPts = append(trainPts, plotter.XY{X: float64(r.Step), Y: *r.Loss})
		}
		if r.EvalLoss != nil {
			evalPts = append(evalPts, plotter.XY{X: float64(r.Step), Y: *r.EvalLoss})
		}
	}
	p := plot.New()
	p.Title.Text = "tune: loss"
	p.X.Label.Text = "step"
	p.Y.Label.Text = "cross-entropy"
	p.Add(plotter.NewGrid())
	for _, s := range []struct {
		name string
		pts  plotter.XYs
		w    int
	}{{"train", trainPts, 0}, {"eval", evalPts, 1}} {
		if len(s.pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(s.pts)
		if err != nil {
			return err
		}
		l.Color = plotter.DefaultLineStyle.Color
		if s.w == 1 {
			l.Color = evalColor
			l.Width = vg.Points(2)
		}
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	// The legend goes in headroom above the curves, inside the frame (at
	// its edge the frame cut it and the curves ran through it).
	p.Legend.Top = true
	p.Legend.XOffs, p.Legend.YOffs = -3*vg.Millimeter, -2*vg.Millimeter
	p.Legend.Padding = vg.Millimeter
	p.Title.Padding = 2 * vg.Millimeter
	if lo, hi := p.Y.Min, p.Y.Max; hi > lo {
		p.Y.Max = hi + 0.2*(hi-lo)
	}
	var buf bytes.Buffer
	wt, err := p.WriterTo(8*vg.Inch, 4.5*vg.Inch, "png")
	if err != nil {
		return err
	}
	if _, err := wt.WriteTo(&buf); err != nil {
		return err
	}
	return checkpoints.WriteFileAtomic(pngPath, func(w io.Writer) error {
		_, err := w.Write(buf.Bytes())
		return err
	})
}

var evalColor = color.RGBA{R: 200, G: 60, B: 30, A: 255}
