package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binDir holds the tune command built for this test process (TestMain).
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tune-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tuneBinary builds the tune command on first use.
func tuneBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(binDir, "tune")
	if _, err := os.Stat(bin); err != nil {
		out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
		if err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	return bin
}

// TestKillDuringRunThenResume kills `tune run` with SIGKILL after its second
// checkpoint, resumes it, and compares with a run never stopped: the same
// losses at every step and the same final adapter, byte for byte. The run
// never stopped also writes the merged model (output.merged).
func TestKillDuringRunThenResume(t *testing.T) {
	bin := tuneBinary(t)
	dir := t.TempDir()
	args := func(out string) []string {
		return []string{"run", "../../configs/demo.yaml", "-q", "output.dir=" + out, "train.max_steps=30", "checkpoint.every=5", "train.eval_every=0", "data.val_ratio=0", "lora.dropout=0.1"}
	}
	whole := filepath.Join(dir, "whole")
	out, err := exec.Command(bin, append(args(whole), "output.merged=true")...).CombinedOutput()
	if err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, out)
	}
	// output.merged: tune run exports the merged model after training.
	if _, err := os.Stat(filepath.Join(whole, "merged", "model.safetensors")); err != nil || !strings.Contains(string(out), "merged: "+filepath.Join(whole, "merged")) {
		t.Errorf("output.merged=true wrote no merged model (%v):\n%s", err, out)
	}

	cut := filepath.Join(dir, "cut")
	cmd := exec.Command(bin, args(cut)...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	killed := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "step-000010") {
			cmd.Process.Signal(syscall.SIGKILL)
			killed = true
			break
		}
	}
	io.Copy(io.Discard, stderr)
	cmd.Wait()
	if !killed {
		t.Fatal("the run ended before its second checkpoint")
	}
	if _, err := os.Stat(filepath.Join(cut, "adapter")); err == nil {
		t.Fatal("the killed run finished anyway: the test proves nothing")
	}
	// `--resume DIR` names the checkpoint (the flag's value is optional).
	step10 := filepath.Join(cut, "checkpoints", "step-000010")
	resume := append([]string{args(cut)[0], args(cut)[1], "--resume", step10}, args(cut)[2:]...)
	if out, err := exec.Command(bin, resume...).CombinedOutput(); err != nil {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	a, _ := os.ReadFile(filepath.Join(whole, "adapter", "adapter_model.safetensors"))
	b, _ := os.ReadFile(filepath.Join(cut, "adapter", "adapter_model.safetensors"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Error("the resumed run's adapter differs from the uninterrupted one")
	}
	ma, _ := os.ReadFile(filepath.Join(whole, "metrics.jsonl"))
	mb, _ := os.ReadFile(filepath.Join(cut, "metrics.jsonl"))
	if la, lb := lossesOf(ma), lossesOf(mb); la != lb || la == "" {
		t.Errorf("losses differ:\nwhole %s\ncut   %s", la, lb)
	}
}

// lossesOf keeps the "step" and "loss" fields of metrics.jsonl, dropping timings.
func lossesOf(metrics []byte) string {
	var b strings.Builder
	for _, line := range strings.Split(string(metrics), "\n") {
		for _, f := range strings.Split(strings.Trim(line, "{}"), ",") {
			if strings.HasPrefix(f, `"step"`) || strings.HasPrefix(f, `"loss"`) {
				b.WriteString(f + " ")
			}
		}
	}
	return b.String()
}

// TestSIGINTWritesCheckpoint: one SIGINT finishes the step, writes a
// checkpoint and exits 0.
func TestSIGINTWritesCheckpoint(t *testing.T) {
	bin := tuneBinary(t)
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(bin, "run", "../../configs/demo.yaml", "-q", "output.dir="+out, "train.max_steps=100000", "checkpoint.every=0", "train.eval_every=0", "data.val_ratio=0")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "training ") {
			break
		}
	}
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	go io.Copy(io.Discard, stderr)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGINT: %v (want 0)", err)
	}
	// One message, with the command that resumes.
	want := "resume with: tune run ../../configs/demo.yaml output.dir=" + out + " train.max_steps=100000 checkpoint.every=0 train.eval_every=0 data.val_ratio=0 --resume\n"
	if !strings.HasPrefix(stdout.String(), "stopped after step ") || !strings.HasSuffix(stdout.String(), want) {
		t.Fatalf("stdout %q, want the step, the checkpoint and %q", stdout.String(), want)
	}
	matches, _ := filepath.Glob(filepath.Join(out, "checkpoints", "step-*", "trainer_state.json"))
	if len(matches) != 1 {
		t.Fatalf("checkpoints after SIGINT: %v", matches)
	}
}

// TestBadConfigsExitTwo: each bad config is one line naming the field, exit 2.
func TestBadConfigsExitTwo(t *testing.T) {
	bin := tuneBinary(t)
	dir := t.TempDir()
	cases := []struct {
		name, yaml, want string
	}{
		{"wrong type", "model: {path: m}\ndata: {train: d}\nlora: {r: eight}\n", "lora.r"},
		{"unknown key", "model: {path: m}\ndata: {train: d}\nlora: {rank: 8}\n", "did you mean lora.r"},
		{"missing model path", "data: {train: d}\n", "model.path"},
		{"r not positive", "model: {path: m}\ndata: {train: d}\nlora: {r: 0}\n", "lora.r"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".yaml")
			os.WriteFile(path, []byte(c.yaml), 0o644)
			for _, sub := range []string{"run", "validate"} {
				out, err := exec.Command(bin, sub, path).CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 2 {
					t.Fatalf("tune %s: %v, want exit code 2\n%s", sub, err, out)
				}
				msg := strings.TrimSpace(string(out))
				if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, c.want) || !strings.Contains(msg, path) || strings.Contains(msg, "goroutine") {
					t.Fatalf("tune %s printed %q, want one line naming %s and %q", sub, msg, path, c.want)
				}
			}
		})
	}
}
