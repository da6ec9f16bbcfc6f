package train

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProgressOnATerminal: on a terminal the frame is redrawn in place and
// shows the step just made (the last one always); a run stopped at step 7 of
// 100 ends its line at 7, not at 100%; after a resume the time left is shown
// from the first step made.
func TestProgressOnATerminal(t *testing.T) {
	var b bytes.Buffer
	p := &progress{w: &b, tty: true, total: 100, first: 5, every: 1, start: time.Now().Add(-2 * time.Second)}
	p.Step(StepRecord{Step: 6, Loss: 2.5, LR: 1e-3, ProcessedPerS: 8000, TokensPerS: 1000})
	if got := b.String(); !strings.HasPrefix(got, "\rstep 6/100 [") || !strings.Contains(got, "loss 2.5000  lr 1.00e-03  8000 tok/s (1000 trained)") || !strings.Contains(got, "left\x1b[K") {
		t.Fatalf("first frame %q", got)
	}
	p.Step(StepRecord{Step: 7, Loss: 2.4}) // within 100 ms: not drawn yet
	p.Clear()
	p.Redraw() // after a log line: the latest step, not the last drawn
	if got := b.String(); !strings.Contains(got, "\r\x1b[K\rstep 7/100 [=                   ]  loss 2.4000") {
		t.Fatalf("after a log line: %q", got)
	}
	b.Reset()
	p.End() // stopped at step 7
	if got := b.String(); !strings.HasPrefix(got, "\rstep 7/100 ") || !strings.HasSuffix(got, "\x1b[K\n") || strings.Contains(got, "100/100") {
		t.Fatalf("end of a stopped run %q", got)
	}
	b.Reset()
	p.Step(StepRecord{Step: 100})
	if got := b.String(); !strings.Contains(got, "step 100/100 [====================]") || strings.Contains(got, "left") {
		t.Fatalf("final frame %q", got)
	}
}
