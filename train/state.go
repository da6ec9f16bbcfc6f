package train

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/tune-dev/tune/checkpoints"
	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/checkpoints/safetensors"
	"github.com/tune-dev/tune/datasets"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/kernels"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
)

// A step checkpoint is a directory checkpoints/step-NNNNNN holding everything a
// resumed run needs to continue as if never stopped:
//
//	adapter_config.json, adapter_model.safetensors  the adapter (PEFT, usable as is)
//	optimizer.safetensors                           AdamW moments: <key>.exp_avg, <key>.exp_avg_sq
//	trainer_state.json                              State: step, data cursor, seed
//
// It is written under a temporary name and renamed, so a kill leaves the
// previous checkpoint whole.
const (
	optimizerFile = "optimizer.safetensors"
	stateFile     = "trainer_state.json"
	stepPrefix    = "step-"
)

// State is trainer_state.json. Every random choice of a run derives from Seed
// and the step or epoch, so no generator state needs saving.
type State struct {
	Step int `json:"step"` // optimizer updates done
	// Data is the data cursor: the epoch and the example of the next batch.
	Data      datasets.Cursor `json:"data"`
	Seed      uint64          `json:"seed"`       // the run's seed
	AdamStep  int             `json:"adam_step"`  // AdamW's step count
	Tokens    int64           `json:"tokens"`     // tokens trained on so far
	BaseModel string          `json:"base_model"` // for the record
}

func stepDir(root string, step int) string {
	return filepath.Join(root, fmt.Sprintf("%s%06d", stepPrefix, step))
}

// SaveCheckpoint writes a step checkpoint and removes the oldest beyond keep.
func SaveCheckpoint(root string, st State, a *lora.Adapter, opt *AdamW, base string, keep int) (string, error) {
	dir := stepDir(root, st.Step)
	err := checkpoints.WriteDirAtomic(dir, func(tmp string) error {
		if err := peft.Write(filepath.Join(tmp, "adapter"), a.PEFTConfig(base), a.PEFTTensors()); err != nil {
			return err
		}
		// The PEFT files sit at the top of the step directory, loadable as is.
		for _, f := range []string{peft.ConfigFile, peft.WeightsFile} {
			if err := os.Rename(filepath.Join(tmp, "adapter", f), filepath.Join(tmp, f)); err != nil {
				return err
			}
		}
		if err := os.Remove(filepath.Join(tmp, "adapter")); err != nil {
			return err
		}
		var moments []safetensors.Tensor
		for i, w := range a.Weights() {
			moments = append(moments,
				safetensors.F32(w.Key+".exp_avg", w.Shape, opt.M[i]),
				safetensors.F32(w.Key+".exp_avg_sq", w.Shape, opt.V[i]))
		}
		meta := map[string]string{"step": strconv.Itoa(opt.Step)}
		if err := safetensors.Write(filepath.Join(tmp, optimizerFile), moments, meta); err != nil {
			return err
		}
		b, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			return err
		}
		return checkpoints.WriteFileAtomic(filepath.Join(tmp, stateFile), func(w io.Writer) error {
			_, err := w.Write(append(b, '\n'))
			return err
		})
	})
	if err != nil {
		return "", fmt.Errorf("write checkpoint %s: %w", dir, err)
	}
	// Temporary directories of checkpoints whose writing was killed.
	stale, _ := filepath.Glob(filepath.Join(root, "."+stepPrefix+"*.tmp-*"))
	for _, s := range stale {
		os.RemoveAll(s)
	}
	steps, err := listSteps(root)
	if err != nil {
		return dir, err
	}
	for len(steps) > max(keep, 1) {
		if err := os.RemoveAll(stepDir(root, steps[0])); err != nil {
			return dir, err
		}
		steps = steps[1:]
	}
	return dir, nil
}

// listSteps returns the steps of the complete checkpoints under root, ascending.
func listSteps(root string) ([]int, error) {
	entries, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var steps []int
	for _, e := range entries {
		n, err := strconv.Atoi(strings.TrimPrefix(e.Name(), stepPrefix))
		if !e.IsDir() || !strings.HasPrefix(e.Name(), stepPrefix) || err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, e.Name(), stateFile)); err == nil {
			steps = append(steps, n)
		}
	}
	sort.Ints(steps)
	return steps, nil
}

// LatestCheckpoint is the newest complete step checkpoint under root, or "".
func LatestCheckpoint(root string) (string, error) {
	steps, err := listSteps(root)
	if err != nil || len(steps) == 0 {
		return "", err
	}
	return stepDir(root, steps[len(steps)-1]), nil
}

// LoadCheckpoint reads a step checkpoint into an adapter of the same layout
// and an optimizer, and returns its state.
func LoadCheckpoint(dir string, cfg model.Config, a *lora.Adapter, opt *AdamW) (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return st, fmt.Errorf("resume: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("resume: %s: %w", filepath.Join(dir, stateFile), err)
	}
	if st.Step < 0 || st.AdamStep < 0 || st.AdamStep > st.Step {
		return st, fmt.Errorf("resume: %s: step %d and adam_step %d are inconsistent (expected 0 <= adam_step <= step)", filepath.Join(dir, stateFile), st.Step, st.AdamStep)
	}
	saved, err := lora.FromPEFT(dir, cfg)
	if err != nil {
		return st, fmt.Errorf("resume: %w", err)
	}
	if len(saved.Modules) != len(a.Modules) || saved.Spec.R != a.Spec.R || saved.Spec.DoRA != a.Spec.DoRA {
		return st, fmt.Errorf("resume: %s: the adapter's layout (%d modules, r=%d, DoRA %v) differs from this config's (%d modules, r=%d, DoRA %v)", dir, len(saved.Modules), saved.Spec.R, saved.Spec.DoRA, len(a.Modules), a.Spec.R, a.Spec.DoRA)
	}
	for i, m := range a.Modules {
		if s := saved.Modules[i]; s.Layer != m.Layer || s.Name != m.Name {
			return st, fmt.Errorf("resume: %s: module %s where this config has %s", dir, s.Key(), m.Key())
		}
	}
	dst := a.Weights()
	for i, w := range saved.Weights() {
		copy(dst[i].Value, w.Value)
	}
	sf, err := safetensors.Open(filepath.Join(dir, optimizerFile))
	if err != nil {
		return st, fmt.Errorf("resume: %w", err)
	}
	defer sf.Close()
	for i, w := range a.Weights() {
		for _, part := range []struct {
			suffix string
			dst    []float32
		}{{".exp_avg", opt.M[i]}, {".exp_avg_sq", opt.V[i]}} {
			t, err := sf.Tensor(w.Key + part.suffix)
			if err != nil {
				return st, fmt.Errorf("resume: %w", err)
			}
			if t.DType != dtype.F32 || len(t.Data) != 4*len(part.dst) {
				return st, fmt.Errorf("resume: %s: %s%s is not F32 with %d values", dir, w.Key, part.suffix, len(part.dst))
			}
			m, err := kernels.NewMatrix(dtype.F32, 1, len(part.dst), t.Data)
			if err != nil {
				return st, fmt.Errorf("resume: %w", err)
			}
			m.Range(0, part.dst)
		}
	}
	opt.Step = st.AdamStep
	return st, nil
}

// ParamsOf lists A and B of every module in the optimizer's order.
func ParamsOf(a *lora.Adapter) [][]float32 {
	var ps [][]float32
	for _, w := range a.Weights() {
		ps = append(ps, w.Value)
	}
	return ps
}
