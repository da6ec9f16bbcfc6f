package main

import (
	"bufio"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/train"
)

// TestTwoRunsIntoOneOutputDir: a second `tune run` into the output.dir of a
// live one is refused (exit 2, one line with the first's PID); once the first
// is killed, its lock file is stale and a new run takes it over.
func TestTwoRunsIntoOneOutputDir(t *testing.T) {
	bin := tuneBinary(t)
	out := filepath.Join(t.TempDir(), "run")
	args := []string{"run", "../../configs/demo.yaml", "output.dir=" + out, "train.eval_every=0", "data.val_ratio=0", "checkpoint.every=1"}
	first := exec.Command(bin, append(args, "train.max_steps=100000")...)
	stderr, _ := first.StderrPipe()
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer first.Process.Kill()
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), "checkpoint ") {
	}
	go io.Copy(io.Discard, stderr)

	second, err := exec.Command(bin, append(args, "train.max_steps=2")...).CombinedOutput()
	var ee *exec.ExitError
	if !asExit(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("second run: %v, want exit code 2\n%s", err, second)
	}
	wantOneLineError(t, string(second), 2, 2, "output.dir: "+out+" in use by PID "+strconv.Itoa(first.Process.Pid))

	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	if b, err := os.ReadFile(filepath.Join(out, train.LockFile)); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(first.Process.Pid) {
		t.Fatalf("the killed run's lock file: %q, %v", b, err)
	}
	third, err := exec.Command(bin, append(args, "train.max_steps=2", "-q", "--resume")...).CombinedOutput()
	if err != nil {
		t.Fatalf("run after the first was killed: %v\n%s", err, third)
	}
	if _, err := os.Stat(filepath.Join(out, train.LockFile)); !os.IsNotExist(err) {
		t.Errorf("lock file left after a finished run: %v", err)
	}
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}

// TestExportRefusesWhatItWouldSpoil: an existing --out file is replaced only
// with --force; --dtype that a format would ignore, --shard-size 0, or a
// file where a directory goes are refused, exit 2, one line.
func TestExportRefusesWhatItWouldSpoil(t *testing.T) {
	dir := modelWithTokenizer(t)
	base, md, err := model.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := lora.New(lora.Spec{R: 2, Alpha: 4, Targets: []string{"q_proj"}}, base.Config, rand.New(rand.NewPCG(1, 1)))
	md.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range a.Modules {
		m.B[0] = 1
	}
	adapter := filepath.Join(t.TempDir(), "adapter")
	if err := peft.Write(adapter, a.PEFTConfig(dir), a.PEFTTensors()); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	dataset := filepath.Join(work, "data.jsonl")
	os.WriteFile(dataset, []byte(`{"text": "precious"}`+"\n"), 0o644)

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"existing file", []string{"--format", "gguf-adapter", "--out", dataset}, "--out " + dataset + " already exists; choose another path, or add --force"},
		{"file for a directory format", []string{"--format", "merged", "--out", dataset}, "is a file; --format merged writes a directory"},
		{"dtype with peft", []string{"--format", "peft", "--dtype", "f16", "--out", filepath.Join(work, "p")}, "--dtype f16: --format peft keeps the adapter's float32 weights"},
		{"q8_0 adapter", []string{"--format", "gguf-adapter", "--dtype", "q8_0", "--out", filepath.Join(work, "a.gguf")}, `--dtype "q8_0": --format gguf-adapter takes f32, f16, bf16`},
		{"shard size 0", []string{"--format", "merged", "--shard-size", "0", "--out", filepath.Join(work, "m")}, "--shard-size 0: expected a positive number"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, code := runLimited(t, append([]string{"export", "--model", dir, "--adapter", adapter}, c.args...)...)
			wantOneLineError(t, out, code, 2, c.want)
		})
	}
	if b, _ := os.ReadFile(dataset); string(b) != `{"text": "precious"}`+"\n" {
		t.Fatalf("the dataset was touched: %q", b)
	}
	if out, code := runLimited(t, "export", "--model", dir, "--adapter", adapter, "--format", "gguf-adapter", "--out", dataset, "--force"); code != 0 {
		t.Fatalf("--force: exit code %d: %s", code, out)
	}
	if b, _ := os.ReadFile(dataset); !strings.HasPrefix(string(b), "GGUF") {
		t.Fatalf("--force did not replace the file: %q", b[:min(8, len(b))])
	}
}
