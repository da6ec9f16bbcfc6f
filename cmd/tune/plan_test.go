package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tune-dev/tune/model/builtin"
	"github.com/tune-dev/tune/plan"
)

// builtinModel generates builtin:NAME once per test process, so that runs
// read a model directory and the generation's memory is no part of theirs.
func builtinModel(t testing.TB, name string) string {
	t.Helper()
	dir := filepath.Join(binDir, "models", name)
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		return dir
	}
	spec, ok := builtin.Named(name)
	if !ok {
		t.Fatalf("no builtin:%s", name)
	}
	if err := builtin.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	debug.FreeOSMemory()
	return dir
}

// planJSON runs tune plan --json and decodes it.
func planJSON(t testing.TB, args ...string) plan.Plan {
	t.Helper()
	cmd := exec.Command(tuneBinary(t), append([]string{"plan", "--json"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tune plan %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	var p plan.Plan
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("tune plan --json: %v\n%s", err, out)
	}
	return p
}

// measuredRun runs tune under /usr/bin/time and returns its output, exit
// code and peak resident memory (time's maximum resident set size). The
// kernel's maxrss of a child that Go starts directly would count the test
// process's own peak, as the child shares its memory until exec.
func measuredRun(t testing.TB, args ...string) (string, int, int64) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		t.Fatal("/usr/bin/time is needed to measure peak memory (Debian package time)")
	}
	rss := filepath.Join(t.TempDir(), "maxrss")
	cmd := exec.Command("/usr/bin/time", append([]string{"-f", "%M", "-o", rss, tuneBinary(t)}, args...)...)
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	b, err := os.ReadFile(rss)
	if err != nil {
		t.Fatal(err)
	}
	// time writes "Command exited with non-zero status N" first on failure.
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	kb, err := strconv.ParseInt(lines[len(lines)-1], 10, 64)
	if err != nil {
		t.Fatalf("/usr/bin/time wrote %q", b)
	}
	return string(out), cmd.ProcessState.ExitCode(), kb * 1024
}

// planCase is one configuration whose plan is checked against real runs.
type planCase struct {
	model      string // a builtin name
	seq, batch int
	recompute  bool
}

func (c planCase) String() string {
	return fmt.Sprintf("%s seq %d batch %d checkpointing %v", c.model, c.seq, c.batch, c.recompute)
}

func (c planCase) args(t testing.TB, out string) []string {
	return []string{"demo", "model.path=" + builtinModel(t, c.model), fmt.Sprintf("data.seq_len=%d", c.seq), fmt.Sprintf("train.batch_size=%d", c.batch),
		fmt.Sprintf("train.activation_checkpointing=%v", c.recompute), "train.max_steps=2", "train.eval_every=0", "data.val_ratio=0",
		"checkpoint.every=0", "lora.dropout=0.05", "output.dir=" + out}
}

// checkPlan plans a case, runs it, and returns the memory error and, when
// timed, the step time's (the median of the run's steps after the first).
func checkPlan(t testing.TB, c planCase, timed bool) (memErr, timeErr float64) {
	out := filepath.Join(t.TempDir(), "run")
	args := c.args(t, out)
	pargs := args
	if !timed {
		pargs = append(pargs, "--no-time")
	}
	p := planJSON(t, pargs...)
	got, code, peak := measuredRun(t, append([]string{"run", "-q"}, args...)...)
	if code != 0 {
		t.Fatalf("%s: tune run: exit code %d\n%s", c, code, got)
	}
	memErr = float64(p.PeakBytes-peak) / float64(peak)
	if !timed {
		return memErr, 0
	}
	var steps []float64
	b, _ := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r struct {
			StepTimeS float64 `json:"step_time_s"`
		}
		if json.Unmarshal([]byte(line), &r) == nil && r.StepTimeS > 0 && i > 0 {
			steps = append(steps, r.StepTimeS)
		}
	}
	if len(steps) == 0 {
		t.Fatalf("%s: no step time in metrics.jsonl:\n%s", c, b)
	}
	return memErr, (p.StepS - steps[len(steps)/2]) / steps[len(steps)/2]
}

// The memory plan is within 10% of the peak resident memory of real
// `tune run` processes, for three model shapes, with and without activation
// checkpointing, at two sequence lengths each. Every error is logged.
func TestPlanMatchesPeakRSS(t *testing.T) {
	cases := []planCase{
		{"tiny", 64, 8, false}, {"tiny", 256, 4, true},
		{"smollm2-135m", 128, 2, false}, {"smollm2-135m", 256, 2, true},
		{"qwen2.5-0.5b", 64, 1, false}, {"qwen2.5-0.5b", 128, 1, true},
	}
	for _, c := range cases {
		e, _ := checkPlan(t, c, false)
		t.Logf("%-50s memory estimate %+.1f%% of the measured peak", c, 100*e)
		if e < -0.10 || e > 0.10 {
			t.Errorf("%s: estimate off by %+.1f%% of the measured peak RSS, want within 10%%", c, 100*e)
		}
	}
}

// BenchmarkPlanAccuracy reports the memory and step-time errors of the plan
// against real runs at larger shapes (make plan-bench): figures, not a
// pass/fail, as timings on a shared machine vary.
func BenchmarkPlanAccuracy(b *testing.B) {
	cases := []planCase{
		{"smollm2-135m", 512, 2, false}, {"smollm2-135m", 512, 2, true},
		{"qwen2.5-0.5b", 256, 2, false}, {"qwen2.5-0.5b", 512, 1, true},
	}
	for range b.N {
		for _, c := range cases {
			m, s := checkPlan(b, c, true)
			b.Logf("%-50s memory %+.1f%%, step time %+.1f%%", c, 100*m, 100*s)
		}
	}
}

// A run the plan says cannot fit is refused with exit code 2 before any
// weight is read (its peak stays under the weights' size), with the plan and
// suggestions; each suggestion, applied, plans as fitting and runs.
func TestRunRefusesWhatCannotFit(t *testing.T) {
	model := builtinModel(t, "smollm2-135m")
	out := filepath.Join(t.TempDir(), "run")
	args := []string{"demo", "model.path=" + model, "data.seq_len=256", "train.batch_size=8", "train.max_steps=1", "train.eval_every=0", "data.val_ratio=0", "checkpoint.every=0", "output.dir=" + out}
	need := planJSON(t, append(args, "--no-time")...)
	weights := need.Memory.Parts[0].Bytes
	// Plan as if 60% of what the run needs were available (the machine is
	// shared: what is available moves between the runs of the test).
	t.Setenv(plan.AvailableEnv, strconv.FormatInt(need.PeakBytes*6/10, 10))
	args = append(args, "resources.reserve_memory=0")

	got, code, peak := measuredRun(t, append([]string{"run", "-q"}, args...)...)
	if code != 2 || !strings.Contains(got, "tune: not started: does not fit") || !strings.Contains(got, "to fit, any one of:") {
		t.Fatalf("exit code %d, output:\n%s\nwant exit code 2, the plan, suggestions and one refusal line", code, got)
	}
	if peak >= weights {
		t.Errorf("the refused run peaked at %s, more than the weights' %s: were they read?", plan.Bytes(peak), plan.Bytes(weights))
	}
	if _, err := os.Stat(filepath.Join(out, "checkpoints")); err == nil {
		t.Error("the refused run wrote checkpoints")
	}

	p := planJSON(t, append(args, "--no-time")...)
	if p.Fits || len(p.Suggestions) == 0 {
		t.Fatalf("plan: fits %v, suggestions %v; want no fit, and suggestions", p.Fits, p.Suggestions)
	}
	for _, s := range p.Suggestions {
		if len(s.Overrides) == 0 {
			t.Errorf("suggestion %q has no overrides to apply", s.Change)
			continue
		}
		applied := append(append([]string{}, args...), s.Overrides...)
		applied = append(applied, "output.dir="+filepath.Join(t.TempDir(), "s"))
		if q := planJSON(t, append(applied, "--no-time")...); !q.Fits {
			t.Errorf("suggestion %q (%v): planned peak %s, but the plan of the config with it does not fit: %s", s.Change, s.Overrides, plan.Bytes(s.PeakBytes), q.Verdict)
			continue
		}
		if got, code, _ := measuredRun(t, append([]string{"run", "-q"}, applied...)...); code != 0 {
			t.Errorf("suggestion %q (%v): tune run exit code %d\n%s", s.Change, s.Overrides, code, got)
		}
		t.Logf("suggestion %q: peak %s, runs", s.Change, plan.Bytes(s.PeakBytes))
	}
}

// The memory guard: while a run trains, another program takes memory until
// less than resources.reserve_memory is available; tune finishes the step,
// writes a checkpoint and exits 0 saying why and how to resume; resumed once
// the memory is back, it ends with the adapter of a run never stopped, bit
// for bit.
func TestRunStopsWhenMemoryRunsLow(t *testing.T) {
	bin := tuneBinary(t)
	dir := t.TempDir()
	args := func(out string, extra ...string) []string {
		return append([]string{"run", "demo", "-q", "output.dir=" + out, "train.max_steps=300", "checkpoint.every=0", "train.eval_every=0", "data.val_ratio=0", "lora.dropout=0.1"}, extra...)
	}
	whole := filepath.Join(dir, "whole")
	if out, err := exec.Command(bin, args(whole, "--force")...).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, out)
	}

	// A reserve 700 MB under what is available now: the run fits, and a
	// program taking 1.5 GB more brings the available memory under it.
	avail, err := plan.Available(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	reserve := fmt.Sprintf("resources.reserve_memory=%d", avail-700e6)
	stopped := filepath.Join(dir, "stopped")
	cmd := exec.Command(bin, args(stopped, reserve)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Wait for training to start: the first step's record.
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(stopped, "metrics.jsonl"))
		if bytes.Contains(b, []byte(`"step"`)) {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no step after 60 s:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	hog := make([]byte, 1500<<20)
	for i := 0; i < len(hog); i += 4096 {
		hog[i] = 1 // resident, page by page
	}
	var werr error
	select {
	case werr = <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("tune did not stop within 60 s of available memory falling under the reserve:\n%s", out.String())
	}
	runtime.KeepAlive(hog)
	hog = nil
	runtime.GC()
	debug.FreeOSMemory()
	msg := out.String()
	if werr != nil || !strings.Contains(msg, "stopped after step") || !strings.Contains(msg, "under resources.reserve_memory") || !strings.Contains(msg, "resume with: tune run demo") {
		t.Fatalf("exit %v, output:\n%s\nwant exit code 0 and a message that says why and how to resume", werr, msg)
	}
	if strings.Contains(msg, "trained 300 steps") {
		t.Fatal("the run finished before memory ran low; the test proves nothing")
	}
	t.Logf("%s", strings.TrimSpace(msg))

	// The reserve was set from what was available then; the machine is
	// shared and has moved on: resume without one (it changes no number).
	if b, err := exec.Command(bin, args(stopped, "resources.reserve_memory=0", "--resume")...).CombinedOutput(); err != nil {
		t.Fatalf("resume: %v\n%s", err, b)
	}
	want, err := os.ReadFile(filepath.Join(whole, "adapter", "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(stopped, "adapter", "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("the adapter of the stopped and resumed run differs from the uninterrupted run's")
	}
}
