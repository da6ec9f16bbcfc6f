package checkpoints

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// PEFT adapter directories: adapter_config.json + adapter_model.safetensors,
// the interchange format of Hugging Face PEFT, vLLM, TGI and LoRAX.
const (
	PEFTConfigFile  = "adapter_config.json"
	PEFTWeightsFile = "adapter_model.safetensors"
)

// PEFTConfig is adapter_config.json for a LoRA adapter. Field names and the
// set of fields are PEFT's LoraConfig (0.9 and later read all of them).
type PEFTConfig struct {
	AlphaPattern        Pattern  `json:"alpha_pattern"`
	AutoMapping         any      `json:"auto_mapping"`
	BaseModelNameOrPath string   `json:"base_model_name_or_path"`
	Bias                string   `json:"bias"`
	FanInFanOut         bool     `json:"fan_in_fan_out"`
	InferenceMode       bool     `json:"inference_mode"`
	InitLoraWeights     bool     `json:"init_lora_weights"`
	LayersPattern       any      `json:"layers_pattern"`
	LayersToTransform   []int    `json:"layers_to_transform"`
	LoraAlpha           float64  `json:"lora_alpha"`
	LoraDropout         float64  `json:"lora_dropout"`
	ModulesToSave       any      `json:"modules_to_save"`
	PeftType            string   `json:"peft_type"`
	R                   int      `json:"r"`
	RankPattern         Pattern  `json:"rank_pattern"`
	Revision            any      `json:"revision"`
	TargetModules       []string `json:"target_modules"`
	TaskType            string   `json:"task_type"`
	UseDora             bool     `json:"use_dora"`
	UseRSLoRA           bool     `json:"use_rslora"`
}

// NewPEFTConfig fills the fields that are the same for every tune adapter.
func NewPEFTConfig(base string, r int, alpha, dropout float64, targets []string, layers []int, rslora bool) PEFTConfig {
	return PEFTConfig{
		BaseModelNameOrPath: base, Bias: "none", InferenceMode: true, InitLoraWeights: true,
		LayersToTransform: layers, LoraAlpha: alpha, LoraDropout: dropout, PeftType: "LORA",
		R: r, TargetModules: targets, TaskType: "CAUSAL_LM", UseRSLoRA: rslora,
	}
}

// WritePEFT writes an adapter directory atomically: both files go into a
// temporary sibling directory that is renamed over dir.
func WritePEFT(dir string, cfg PEFTConfig, tensors []Tensor) error {
	return writePEFT(dir, cfg, func(path string) error {
		return WriteSafetensors(path, tensors, peftMetadata())
	})
}

// WritePEFTFunc is WritePEFT with the weights produced one at a time, as
// WriteSafetensorsFunc does: data(i) gives tensor i's bytes when it is written.
func WritePEFTFunc(dir string, cfg PEFTConfig, tensors []Tensor, data func(i int) ([]byte, error)) error {
	return writePEFT(dir, cfg, func(path string) error {
		return WriteSafetensorsFunc(path, tensors, peftMetadata(), data)
	})
}

// peftMetadata is what PEFT's save_pretrained puts in the header.
func peftMetadata() map[string]string { return map[string]string{"format": "pt"} }

func writePEFT(dir string, cfg PEFTConfig, weights func(path string) error) error {
	return WriteDirAtomic(dir, func(tmp string) error {
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFileSync(filepath.Join(tmp, PEFTConfigFile), append(b, '\n')); err != nil {
			return err
		}
		return weights(filepath.Join(tmp, PEFTWeightsFile))
	})
}

// ReadPEFT opens an adapter directory. The caller closes the weights.
func ReadPEFT(dir string) (PEFTConfig, *Safetensors, error) {
	var cfg PEFTConfig
	path := filepath.Join(dir, PEFTConfigFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, nil, fmt.Errorf("PEFT adapter: %w", err)
	}
	if err := decodePEFTConfig(b, &cfg); err != nil {
		return cfg, nil, fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case cfg.PeftType != "LORA":
		return cfg, nil, fmt.Errorf("%s: peft_type %q: tune reads LORA adapters", path, cfg.PeftType)
	case cfg.R <= 0:
		return cfg, nil, fmt.Errorf("%s: r: %d; expected a positive integer", path, cfg.R)
	case cfg.LoraAlpha <= 0:
		return cfg, nil, fmt.Errorf("%s: lora_alpha: %g; expected a positive number", path, cfg.LoraAlpha)
	case cfg.FanInFanOut:
		return cfg, nil, fmt.Errorf("%s: fan_in_fan_out: true is not supported", path)
	case cfg.UseDora:
		return cfg, nil, fmt.Errorf("%s: use_dora: true is not supported", path)
	}
	if _, err := cfg.Layout(); err != nil {
		return cfg, nil, fmt.Errorf("%s: %w", path, err)
	}
	st, err := OpenSafetensors(filepath.Join(dir, PEFTWeightsFile))
	if err != nil {
		return cfg, nil, err
	}
	return cfg, st, nil
}

// WriteDirAtomic builds a directory under a temporary name next to dir, syncs
// it, and puts it in place of dir, so that a crash leaves either the old
// directory or the new one, never half of one. An existing dir is replaced
// only when it holds nothing the new one does not (an earlier output of the
// same kind): a directory with other files in it is the user's, and is left
// alone with an error.
func WriteDirAtomic(dir string, fill func(tmp string) error) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	err = fill(tmp)
	if err == nil {
		err = os.Chmod(tmp, 0o755) // MkdirTemp makes it private
	}
	if err == nil {
		err = syncDir(tmp)
	}
	if err == nil {
		err = checkReplaceable(dir, tmp)
	}
	if err == nil {
		err = replaceDir(tmp, dir)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	return syncDir(parent)
}

// checkReplaceable refuses to replace an existing dir that holds an entry
// the new directory new does not.
func checkReplaceable(dir, new string) error {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, err := os.Lstat(filepath.Join(new, e.Name())); err != nil {
			return fmt.Errorf("%s already exists and holds %s, which tune would not write there: choose another output or remove it", dir, e.Name())
		}
	}
	return nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// replaceDirTwoSteps moves an existing dir aside, then tmp in its place; a
// crash between the two leaves the old one at tmp+".old".
func replaceDirTwoSteps(tmp, dir string) error {
	old := ""
	if _, err := os.Stat(dir); err == nil {
		old = tmp + ".old"
		if err := os.Rename(dir, old); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			os.Rename(old, dir)
		}
		return err
	}
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}

// decodePEFTConfig reads adapter_config.json, accepting the other forms PEFT
// allows: target_modules as one string (a module name or a regex) and
// layers_to_transform as one int.
func decodePEFTConfig(b []byte, cfg *PEFTConfig) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return jsonErr(err)
	}
	if tm, ok := raw["target_modules"]; ok {
		var one string
		if json.Unmarshal(tm, &one) == nil {
			raw["target_modules"], _ = json.Marshal([]string{one})
		}
	}
	if lt, ok := raw["layers_to_transform"]; ok {
		var one int
		if json.Unmarshal(lt, &one) == nil {
			raw["layers_to_transform"], _ = json.Marshal([]int{one})
		}
	}
	// The patterns keep their order (the first match wins in PEFT).
	var patterns [2]Pattern
	for i, name := range []string{"rank_pattern", "alpha_pattern"} {
		if p, ok := raw[name]; ok {
			if err := patterns[i].UnmarshalJSON(p); err != nil {
				return fmt.Errorf("field %s: %w", name, err)
			}
			delete(raw, name)
		}
	}
	cfg.RankPattern, cfg.AlphaPattern = patterns[0], patterns[1]
	norm, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(norm, cfg); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("field %s: got a JSON %s, expected %s", te.Field, te.Value, te.Type)
		}
		return jsonErr(err)
	}
	return nil
}
