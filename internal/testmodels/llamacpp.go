package testmodels

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// LlamaCppDir is the llama.cpp oracle: node-llama-cpp and score.mjs.
func LlamaCppDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "oracle", "llamacpp")
}

// ScoreRun and ScoreResult mirror score.mjs's request and answer.
type ScoreRun struct {
	Model    string   `json:"model"`
	Adapters []string `json:"adapters,omitempty"`
	IDs      []int32  `json:"ids,omitempty"`
	Texts    []string `json:"texts,omitempty"`
}

type ScoreResult struct {
	NVocab   int       `json:"n_vocab"`
	LogProbs []float64 `json:"logprobs"`
	Top1     []int     `json:"top1"`
	Tokens   [][]int   `json:"tokens"`
}

// LlamaCpp runs score.mjs once for several runs (one node start-up).
func LlamaCpp(runs []ScoreRun) ([]ScoreResult, error) {
	req, err := json.Marshal(map[string]any{"runs": runs})
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "tune-llamacpp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	reqPath := filepath.Join(tmp, "request.json")
	if err := os.WriteFile(reqPath, req, 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("node", "score.mjs", reqPath)
	cmd.Dir = LlamaCppDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("llama.cpp oracle failed (%v): %s; run `make setup`", err, stderr.String())
	}
	var out struct {
		Results []ScoreResult `json:"results"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("llama.cpp oracle output: %v: %.300s", err, stdout.String())
	}
	if len(out.Results) != len(runs) {
		return nil, fmt.Errorf("llama.cpp oracle gave %d results for %d runs", len(out.Results), len(runs))
	}
	return out.Results, nil
}
