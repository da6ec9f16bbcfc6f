package lora

import (
	"fmt"
	"slices"

	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/checkpoints/safetensors"
	"github.com/tune-dev/tune/kernels"
	"github.com/tune-dev/tune/model"
)

// PEFTTensors are the adapter's weights under PEFT's key names, F32:
// <key>.lora_A.weight (R, In) and <key>.lora_B.weight (Out, R).
func (a *Adapter) PEFTTensors() []safetensors.Tensor {
	var out []safetensors.Tensor
	for _, w := range a.Weights() {
		out = append(out, safetensors.F32(w.Key, w.Shape, w.Value))
	}
	return out
}

// PEFTConfig is the adapter's adapter_config.json.
func (a *Adapter) PEFTConfig(base string) peft.Config {
	var targets []string
	for _, t := range model.Projections() {
		if slices.Contains(a.Spec.Targets, t) {
			targets = append(targets, t)
		}
	}
	return peft.NewConfig(base, a.Spec.R, a.Spec.Alpha, a.Spec.Dropout, targets, a.Spec.Layers, a.Spec.RSLoRA)
}

// FromPEFT loads an adapter directory for a model: the spec from
// adapter_config.json, A and B from the safetensors (F32, F16 or BF16). Every
// key must name an existing projection with the right shape, and every
// module needs both matrices.
func FromPEFT(dir string, cfg model.Config) (*Adapter, error) {
	pc, st, err := peft.Read(dir)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	// The targets and layers that count are the ones with weights in the
	// file, whatever target_modules and layers_to_transform say.
	spec := Spec{R: pc.R, Alpha: pc.LoraAlpha, Dropout: pc.LoraDropout, RSLoRA: pc.UseRSLoRA}
	type found struct{ a, b bool }
	seen := map[[2]string]*found{}
	var layers []int
	var targets []string
	for _, name := range st.Names() {
		layer, module, which, ok := parseKey(name)
		if !ok || layer >= cfg.Layers {
			return nil, fmt.Errorf("%s: tensor %q is not a LoRA weight of a projection of this %d-layer model", dir, name, cfg.Layers)
		}
		k := [2]string{fmt.Sprint(layer), module}
		if seen[k] == nil {
			seen[k] = &found{}
		}
		if which == "A" {
			seen[k].a = true
		} else {
			seen[k].b = true
		}
		if !slices.Contains(layers, layer) {
			layers = append(layers, layer)
		}
		if !slices.Contains(targets, module) {
			targets = append(targets, module)
		}
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("%s: the adapter has no LoRA weights", dir)
	}
	spec.Targets = targets
	if len(layers) < cfg.Layers {
		spec.Layers = layers
	} else {
		spec.Layers = nil
	}
	a, err := New(spec, cfg, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	for _, m := range a.Modules {
		f := seen[[2]string{fmt.Sprint(m.Layer), m.Name}]
		if f == nil {
			continue // a layer/target pair the file lacks: zero, no effect
		}
		if !f.a || !f.b {
			return nil, fmt.Errorf("%s: %s has only one of lora_A and lora_B", dir, m.Key())
		}
		for _, w := range a.ModuleWeights(m) {
			if err := readInto(st, w.Key, w.Shape, w.Value); err != nil {
				return nil, fmt.Errorf("%s: %w", dir, err)
			}
		}
	}
	return a, nil
}

func readInto(st *safetensors.File, name string, shape []int, dst []float32) error {
	t, err := st.Tensor(name)
	if err != nil {
		return err
	}
	if !slices.Equal(t.Shape, shape) {
		return fmt.Errorf("tensor %s: shape %v, expected %v", name, t.Shape, shape)
	}
	m, err := kernels.NewMatrix(t.DType, 1, len(dst), t.Data)
	if err != nil {
		return fmt.Errorf("tensor %s: %w", name, err)
	}
	m.Range(0, dst)
	return nil
}

// parseKey splits base_model.model.model.layers.N.<path>.lora_{A,B}.weight.
func parseKey(name string) (layer int, module, which string, ok bool) {
	var rest string
	if _, err := fmt.Sscanf(name, "base_model.model.model.layers.%d.%s", &layer, &rest); err != nil || layer < 0 {
		return 0, "", "", false
	}
	for _, mod := range model.Projections() {
		for _, w := range []string{"A", "B"} {
			if name == weightKey(layer, mod, w) {
				return layer, mod, w, true
			}
		}
	}
	return 0, "", "", false
}
