package peft

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tune-dev/tune/checkpoints"
	"github.com/tune-dev/tune/checkpoints/safetensors"
)

// PEFT adapter directories: adapter_config.json + adapter_model.safetensors,
// the interchange format of Hugging Face PEFT, vLLM, TGI and LoRAX.
const (
	ConfigFile  = "adapter_config.json"
	WeightsFile = "adapter_model.safetensors"
)

// Config is adapter_config.json for a LoRA adapter. Field names and the
// set of fields are PEFT's LoraConfig (0.9 and later read all of them).
type Config struct {
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
	// TargetRegex is target_modules given as one string, which PEFT reads
	// as a regular expression over module paths.
	TargetRegex string `json:"-"`
	TaskType    string `json:"task_type"`
	UseDora     bool   `json:"use_dora"`
	UseRSLoRA   bool   `json:"use_rslora"`
}

// MaxLoRARank bounds adapter_config.json's r: a rank is at most a
// projection's width, and no model tune reads is wider (model config bounds).
const MaxLoRARank = 1 << 18

// NewConfig fills the fields that are the same for every tune adapter.
func NewConfig(base string, r int, alpha, dropout float64, targets []string, layers []int, rslora bool) Config {
	return Config{
		BaseModelNameOrPath: base, Bias: "none", InferenceMode: true, InitLoraWeights: true,
		LayersToTransform: layers, LoraAlpha: alpha, LoraDropout: dropout, PeftType: "LORA",
		R: r, TargetModules: targets, TaskType: "CAUSAL_LM", UseRSLoRA: rslora,
	}
}

// Write writes an adapter directory atomically: both files go into a
// temporary sibling directory that is renamed over dir.
func Write(dir string, cfg Config, tensors []safetensors.Tensor) error {
	return write(dir, cfg, func(path string) error {
		return safetensors.Write(path, tensors, metadata())
	})
}

// WriteFunc is Write with the weights produced one at a time, as
// safetensors.WriteFunc does: data(i) gives tensor i's bytes when it is written.
func WriteFunc(dir string, cfg Config, tensors []safetensors.Tensor, data func(i int) ([]byte, error)) error {
	return write(dir, cfg, func(path string) error {
		return safetensors.WriteFunc(path, tensors, metadata(), data)
	})
}

// metadata is what PEFT's save_pretrained puts in the header.
func metadata() map[string]string { return map[string]string{"format": "pt"} }

func write(dir string, cfg Config, weights func(path string) error) error {
	return checkpoints.WriteDirAtomic(dir, func(tmp string) error {
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFileSync(filepath.Join(tmp, ConfigFile), append(b, '\n')); err != nil {
			return err
		}
		return weights(filepath.Join(tmp, WeightsFile))
	})
}

// Read opens an adapter directory. The caller closes the weights.
func Read(dir string) (Config, *safetensors.File, error) {
	var cfg Config
	path := filepath.Join(dir, ConfigFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, nil, fmt.Errorf("PEFT adapter: %w", err)
	}
	if err := decodeConfig(b, &cfg); err != nil {
		return cfg, nil, fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case cfg.PeftType != "LORA":
		return cfg, nil, fmt.Errorf("%s: peft_type %q: tune reads LORA adapters", path, cfg.PeftType)
	case cfg.R <= 0:
		return cfg, nil, fmt.Errorf("%s: r: %d; expected a positive integer", path, cfg.R)
	case cfg.R > MaxLoRARank:
		return cfg, nil, fmt.Errorf("%s: r: %d; expected at most %d", path, cfg.R, MaxLoRARank)
	case !(cfg.LoraDropout >= 0 && cfg.LoraDropout < 1):
		return cfg, nil, fmt.Errorf("%s: lora_dropout: %g; expected a number in [0, 1)", path, cfg.LoraDropout)
	case cfg.LoraAlpha <= 0:
		return cfg, nil, fmt.Errorf("%s: lora_alpha: %g; expected a positive number", path, cfg.LoraAlpha)
	case cfg.FanInFanOut:
		return cfg, nil, fmt.Errorf("%s: fan_in_fan_out: true is not supported", path)
	}
	if _, err := cfg.Layout(); err != nil {
		return cfg, nil, fmt.Errorf("%s: %w", path, err)
	}
	st, err := safetensors.Open(filepath.Join(dir, WeightsFile))
	if err != nil {
		return cfg, nil, err
	}
	return cfg, st, nil
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

// decodeConfig reads adapter_config.json, accepting the other forms PEFT
// allows: target_modules as one string (a module name or a regex) and
// layers_to_transform as one int.
func decodeConfig(b []byte, cfg *Config) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return checkpoints.JSONError(err)
	}
	if tm, ok := raw["target_modules"]; ok && string(tm) != "null" {
		if json.Unmarshal(tm, &cfg.TargetRegex) == nil {
			delete(raw, "target_modules")
		}
	}
	if lt, ok := raw["layers_to_transform"]; ok && string(lt) != "null" {
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
		return checkpoints.JSONError(err)
	}
	return nil
}
