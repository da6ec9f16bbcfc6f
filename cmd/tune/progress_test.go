package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// TestProgressLinesWithoutATerminal: with stderr not a terminal, tune run
// writes a plain line every train.log_every steps (no carriage-return
// frames) with processed and trained tokens a second and the time left,
// also after --resume; resuming a finished run says so.
func TestProgressLinesWithoutATerminal(t *testing.T) {
	bin := tuneBinary(t)
	out := filepath.Join(t.TempDir(), "run")
	common := []string{"output.dir=" + out, "train.max_steps=12", "train.log_every=5", "checkpoint.every=6", "train.eval_every=0"}
	run := func(args ...string) (string, string) {
		t.Helper()
		var so, se bytes.Buffer
		cmd := exec.Command(bin, append(append([]string{"run", "demo"}, common...), args...)...)
		cmd.Stdout, cmd.Stderr = &so, &se
		if err := cmd.Run(); err != nil {
			t.Fatalf("tune run %v: %v\n%s%s", args, err, so.String(), se.String())
		}
		return so.String(), se.String()
	}
	line := regexp.MustCompile(`(?m)^step (\d+)/12  loss \d+\.\d{4}  lr \d\.\d\de[-+]\d\d  (\d+) tok/s \((\d+) trained\)(  \d+(h|m|s|ms)\S* left)?$`)
	check := func(stderr string, steps ...string) {
		t.Helper()
		if strings.Contains(stderr, "\r") {
			t.Fatalf("carriage returns in a log:\n%q", stderr)
		}
		ms := line.FindAllStringSubmatch(stderr, -1)
		var got []string
		for _, m := range ms {
			got = append(got, m[1])
			if (m[4] != "") != (m[1] != "12") {
				t.Errorf("step %s: time left %q", m[1], m[4])
			}
		}
		if strings.Join(got, ",") != strings.Join(steps, ",") {
			t.Fatalf("progress lines for steps %v, want %v:\n%s", got, steps, stderr)
		}
	}
	_, stderr := run()
	check(stderr, "5", "10", "12")
	_, stderr = run("--resume", filepath.Join(out, "checkpoints", "step-000006"))
	check(stderr, "10", "12")
	stdout, _ := run("--resume")
	if want := "nothing to train: the run already completed its 12 steps\n"; !strings.HasPrefix(stdout, want) {
		t.Fatalf("resuming a finished run: %q, want %q", stdout, want)
	}
	b, _ := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var r struct {
			Tokens        int     `json:"tokens"`
			Processed     int     `json:"processed_tokens"`
			ProcessedPerS float64 `json:"processed_tokens_per_s"`
		}
		if err := json.Unmarshal(l, &r); err != nil || r.Processed < r.Tokens || r.Processed == 0 || !(r.ProcessedPerS > 0) {
			t.Fatalf("metrics record %s: processed %d < trained %d?", l, r.Processed, r.Tokens)
		}
	}
}

// TestCtrlCWhileReadingData: a stop asked for while the data are read ends
// the run before the model is loaded or a step taken, with nothing saved.
// The first data file is a FIFO, so the run is reading it, deterministically,
// when the stop comes.
func TestCtrlCWhileReadingData(t *testing.T) {
	bin := tuneBinary(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "a.jsonl")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(dir, "b.jsonl")
	os.WriteFile(b, []byte(`{"input_ids": [1, 2, 3]}`+"\n"), 0o644)
	out := filepath.Join(dir, "run")
	cmd := exec.Command(bin, "run", "demo", "output.dir="+out, "train.eval_every=0", "data.val_ratio=0", "data.train=",
		"data.sources=[{path: "+fifo+", format: pretokenized}, {path: "+b+", format: pretokenized}]")
	var stdout bytes.Buffer
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = &stdout, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		pw.Close()
		exited <- err
	}()
	var log []string
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Wait until tune opens the first file (a non-blocking open for writing
	// succeeds once a reader has it open), then ask it to stop while it
	// reads, and let it finish the file once the stop is acknowledged.
	var w *os.File
	for {
		var err error
		if w, err = os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("tune run ended before reading the data: %v\n%s", err, stdout.String())
		default:
		}
	}
	cmd.Process.Signal(os.Interrupt)
	for l := range lines {
		log = append(log, l)
		if strings.Contains(l, "finishing the current step") {
			break
		}
	}
	w.WriteString(`{"input_ids": [4, 5, 6]}` + "\n")
	w.Close()
	for l := range lines {
		log = append(log, l)
	}
	if err := <-exited; err != nil {
		t.Fatalf("exit: %v\n%s", err, strings.Join(log, "\n"))
	}
	if stdout.String() != "stopped before training: nothing was saved\n" || strings.Contains(strings.Join(log, "\n"), "training ") {
		t.Fatalf("stdout %q, log %q", stdout.String(), log)
	}
	if _, err := os.Stat(filepath.Join(out, "checkpoints")); !os.IsNotExist(err) {
		t.Fatalf("a checkpoint directory after a stop before training: %v", err)
	}
}
