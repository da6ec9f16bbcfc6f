package testmodels

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// RefInput is the input of the PyTorch reference, (B, T) matrices.
type RefInput struct {
	InputIDs    [][]int32 `json:"input_ids"`
	Labels      [][]int32 `json:"labels,omitempty"`
	PositionIDs [][]int32 `json:"position_ids,omitempty"`
	SegmentIDs  [][]int32 `json:"segment_ids,omitempty"`
}

// ReferenceScript is the path of reference.py, the independent PyTorch
// implementation of the Llama family that tests compare against.
func ReferenceScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "reference", "reference.py")
}

// Python is the interpreter with Debian's python3-torch.
const Python = "/usr/bin/python3"

// Reference runs reference.py forward on a model directory and returns the loss
// and the logits (B·T·V, row-major). extra are more flags, e.g. --adapter DIR.
func Reference(modelDir string, in RefInput, extra ...string) (loss float32, logits []float32, err error) {
	tmp, err := os.MkdirTemp("", "tune-ref-")
	if err != nil {
		return 0, nil, err
	}
	defer os.RemoveAll(tmp)
	inPath, outPath := filepath.Join(tmp, "in.json"), filepath.Join(tmp, "out.bin")
	b, err := json.Marshal(in)
	if err != nil {
		return 0, nil, err
	}
	if err := os.WriteFile(inPath, b, 0o644); err != nil {
		return 0, nil, err
	}
	args := append([]string{ReferenceScript(), "forward", "--model", modelDir, "--input", inPath, "--out", outPath}, extra...)
	cmd := exec.Command(Python, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return 0, nil, fmt.Errorf("PyTorch reference failed (%v): %s; the tests need Debian's python3-torch: run `make setup`", err, bytes.TrimSpace(stderr.Bytes()))
	}
	raw, err := os.ReadFile(outPath)
	if err != nil {
		return 0, nil, err
	}
	if len(raw) < 4 || len(raw)%4 != 0 {
		return 0, nil, fmt.Errorf("reference output has %d bytes", len(raw))
	}
	vals := make([]float32, len(raw)/4)
	for i := range vals {
		vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return vals[0], vals[1:], nil
}
