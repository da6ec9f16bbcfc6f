package main

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A training run with each kernel variant forced converges alike: the same
// data and seed under TUNE_KERNELS=ref (plain Go) and avx2 (assembly, where
// the CPU has it) give the same loss curve within float rounding, and both
// learn.
func TestKernelVariantsTrainAlike(t *testing.T) {
	bin := tuneBinary(t)
	losses := map[string][]float64{}
	for _, variant := range []string{"ref", "avx2"} {
		out := filepath.Join(t.TempDir(), variant)
		cmd := exec.Command(bin, "run", "../../configs/demo.yaml", "-q", "output.dir="+out, "train.max_steps=40", "train.eval_every=0", "data.val_ratio=0")
		cmd.Env = append(os.Environ(), "TUNE_KERNELS="+variant)
		msg, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 2 && variant != "ref" {
			t.Logf("TUNE_KERNELS=%s is not available here: %s", variant, msg)
			continue
		}
		if err != nil {
			t.Fatalf("TUNE_KERNELS=%s: %v\n%s", variant, err, msg)
		}
		f, err := os.Open(filepath.Join(out, "metrics.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r struct{ Loss *float64 }
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			if r.Loss != nil {
				losses[variant] = append(losses[variant], *r.Loss)
			}
		}
		f.Close()
	}
	ref := losses["ref"]
	if len(ref) != 40 || ref[39] > ref[0]/2 {
		t.Fatalf("ref: %d steps, loss %v -> %v: want 40 steps and the loss halved", len(ref), ref[0], ref[len(ref)-1])
	}
	for variant, l := range losses {
		if len(l) != len(ref) {
			t.Fatalf("%s: %d steps, ref %d", variant, len(l), len(ref))
		}
		for i := range l {
			if math.Abs(l[i]-ref[i]) > 1e-3*math.Abs(ref[i]) {
				t.Errorf("%s: step %d loss %v, ref %v", variant, i+1, l[i], ref[i])
			}
		}
	}
}
