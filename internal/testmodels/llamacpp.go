package testmodels

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
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

// NextTokenStats turns logits into what score.mjs reports: log p(ids[t+1])
// for each position, the argmax, and the gap between the best two logits.
func NextTokenStats(logits []float32, vocab int, ids []int32) (logprobs []float64, top1 []int, gap []float64) {
	for t := range ids {
		row := logits[t*vocab : (t+1)*vocab]
		best, second := math.Inf(-1), math.Inf(-1)
		arg := -1
		for i, l := range row {
			switch f := float64(l); {
			case f > best:
				best, second, arg = f, best, i
			case f > second:
				second = f
			}
		}
		top1, gap = append(top1, arg), append(gap, best-second)
		if t+1 < len(ids) {
			var sum float64
			for _, l := range row {
				sum += math.Exp(float64(l) - best)
			}
			logprobs = append(logprobs, float64(row[ids[t+1]])-best-math.Log(sum))
		}
	}
	return logprobs, top1, gap
}
