package train

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// progress reports the steps of a run (a nil *progress reports nothing): on a terminal, one line redrawn in
// place (a bar, the loss, the learning rate, tokens per second and the time
// left); elsewhere (a log file, a CI job), a plain line every `every` steps
// (train.log_every; 0: the last step's only),
// since carriage-return frames would pile up there. Tokens per second count
// every token the model ran through, masked or not; the trained ones (those
// with a label) are shown beside them.
type progress struct {
	w       io.Writer // nil: report nothing
	tty     bool
	total   int
	first   int // the step this invocation started from (after --resume)
	every   int
	start   time.Time
	lastAt  time.Time
	last    StepRecord
	drawn   bool // a frame is on the terminal's current line
	stepped bool
}

func newProgress(w io.Writer, total, done, every int) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, tty: ok && term.IsTerminal(int(f.Fd())), total: total, first: done, every: every, start: time.Now()}
}

// Step reports a step's record.
func (p *progress) Step(rec StepRecord) {
	if p == nil || p.w == nil {
		return
	}
	p.last, p.stepped = rec, true
	final := rec.Step >= p.total
	if p.tty {
		// Redraw at most ten times a second, and always the last step.
		if now := time.Now(); final || now.Sub(p.lastAt) >= 100*time.Millisecond {
			p.lastAt = now
			p.draw()
		}
		return
	}
	if p.every > 0 && rec.Step%p.every == 0 || final {
		fmt.Fprintln(p.w, p.line(rec))
	}
}

func (p *progress) draw() {
	fmt.Fprintf(p.w, "\r%s\x1b[K", p.line(p.last))
	p.drawn = true
}

// line describes a step: "step 37/150 [====>    ] loss 2.1234  lr 2.00e-03
// 8123 tok/s (1204 trained)  1m12s left".
func (p *progress) line(rec StepRecord) string {
	var b strings.Builder
	fmt.Fprintf(&b, "step %d/%d", rec.Step, p.total)
	if p.tty {
		const width = 20
		n := width * rec.Step / max(p.total, 1)
		fmt.Fprintf(&b, " [%s%s]", strings.Repeat("=", n), strings.Repeat(" ", width-n))
	}
	fmt.Fprintf(&b, "  loss %.4f  lr %.2e  %.0f tok/s (%.0f trained)", rec.Loss, rec.LR, rec.ProcessedPerS, rec.TokensPerS)
	if done := rec.Step - p.first; done > 0 && rec.Step < p.total {
		left := time.Since(p.start) / time.Duration(done) * time.Duration(p.total-rec.Step)
		fmt.Fprintf(&b, "  %s left", left.Round(time.Second))
	}
	return b.String()
}

// Clear erases the frame, so that a log line does not land in it; Redraw
// puts it back.
func (p *progress) Clear() {
	if p != nil && p.tty && p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

// Redraw shows the last step's frame again after a log line.
func (p *progress) Redraw() {
	if p != nil && p.tty && p.stepped {
		p.draw()
	}
}

// End leaves the last frame on its own line: the final one when the run
// completed, the one it stopped at when it was interrupted.
func (p *progress) End() {
	if p != nil && p.tty && p.stepped {
		p.draw()
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}
