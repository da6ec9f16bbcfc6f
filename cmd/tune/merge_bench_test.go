package main

import (
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
)

// qwen7B is Qwen2.5-7B's shape, all a merge needs of the model.
var qwen7B = model.Config{ModelType: "qwen2", Hidden: 3584, Intermediate: 18944, Layers: 28, Heads: 28, KVHeads: 4, HeadDim: 128, Vocab: 152064}

// BenchmarkMerge7B runs `tune merge` (svd, the default) on three r16
// adapters on every linear layer of a Qwen2.5-7B-shaped model (161 MB each)
// and reports the command's wall time, CPU time (the honest figure on a
// shared machine) and peak resident memory (which counts the pages of the
// inputs' memory maps it touched).
func BenchmarkMerge7B(b *testing.B) {
	bin := tuneBinary(b)
	dir := b.TempDir()
	r := rand.New(rand.NewPCG(7, 7))
	var args []string
	for i := range 3 {
		a, err := lora.New(lora.Spec{R: 16, Alpha: 32, Targets: []string{lora.AllLinear}}, qwen7B, r)
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range a.Modules {
			for j := range m.B {
				m.B[j] = float32(r.NormFloat64() * 0.01)
			}
		}
		path := filepath.Join(dir, fmt.Sprint("a", i))
		if err := peft.Write(path, a.PEFTConfig("Qwen/Qwen2.5-7B"), a.PEFTTensors()); err != nil {
			b.Fatal(err)
		}
		args = append(args, path)
	}
	b.ResetTimer()
	for range b.N {
		cmd := exec.Command(bin, append([]string{"merge", "--out", filepath.Join(dir, "merged")}, args...)...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		secs := time.Since(start).Seconds()
		if err != nil {
			b.Fatalf("tune merge: %v\n%s", err, out)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		b.ReportMetric(secs, "s/merge")
		b.ReportMetric((cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds(), "CPU-s/merge")
		b.ReportMetric(float64(ru.Maxrss)/1024, "MiB-peak-RSS")
		b.Logf("%s", out)
	}
}
