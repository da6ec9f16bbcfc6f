package plan

import (
	"context"
	"os/exec"
	"testing"
)

// parseNvidiaSMI reads nvidia-smi's CSV (an H100's line, as the driver
// prints it) and refuses a malformed one.
func TestParseNvidiaSMI(t *testing.T) {
	gpus, err := parseNvidiaSMI([]byte("NVIDIA H100 80GB HBM3, 81559, 80998\nNVIDIA GeForce RTX 4090, 24564, 1200\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []GPU{{"NVIDIA H100 80GB HBM3", 81559 << 20, 80998 << 20}, {"NVIDIA GeForce RTX 4090", 24564 << 20, 1200 << 20}}
	if len(gpus) != 2 || gpus[0] != want[0] || gpus[1] != want[1] {
		t.Errorf("got %+v, want %+v", gpus, want)
	}
	for _, bad := range []string{"GPU, 1\n", "GPU, lots, 2\n"} {
		if _, err := parseNvidiaSMI([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestKindOf(t *testing.T) {
	for name, want := range map[string]string{"firefox": kindBrowsers, "chrome": kindBrowsers, "code": kindEditors, "nvim": kindEditors, "containerd-shim": kindContainers, "tune": kindTune, "bash": kindOther} {
		if got := kindOf(name); got != want {
			t.Errorf("kindOf(%q) = %q, want %q", name, got, want)
		}
	}
}

// On this machine: memory figures that make sense, this CPU's cores, and
// "no GPU" said cleanly where nvidia-smi is missing.
func TestDetect(t *testing.T) {
	m, err := Detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", m)
	if m.TotalBytes <= 0 || m.AvailableBytes <= 0 || m.AvailableBytes > m.TotalBytes {
		t.Errorf("memory: total %d, available %d", m.TotalBytes, m.AvailableBytes)
	}
	if m.Threads < 1 || m.CPU == "" {
		t.Errorf("cpu %q, %d threads", m.CPU, m.Threads)
	}
	if _, err := exec.LookPath("nvidia-smi"); err != nil {
		if len(m.GPUs) != 0 || m.GPUNote != "no GPU (nvidia-smi not found)" {
			t.Errorf("without nvidia-smi: GPUs %v, note %q", m.GPUs, m.GPUNote)
		}
	} else if len(m.GPUs) == 0 && m.GPUNote == "" {
		t.Error("nvidia-smi is here, but no GPU and no note why")
	}
	if len(m.Groups) == 0 {
		t.Error("no running process found besides this one")
	}
}
