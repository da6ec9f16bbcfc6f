package lora

import (
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

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

// FromPEFT loads an adapter directory for a model. The adapter goes where
// its adapter_config.json says, as PEFT applies it: the projections that
// target_modules selects (names matched as suffixes of the module path, a
// string as a regular expression over it, or "all-linear"), in the layers of
// layers_to_transform (all when absent). Everything is checked against the
// safetensors header before any memory is allocated: every selected module
// has both matrices, no tensor lies outside the selection, and each shape is
// [r, in] or [out, r] for r from the config and this model's projection
// sizes, so an adapter made for another model or a config that lies about r
// is refused, naming the tensor.
func FromPEFT(dir string, cfg model.Config) (*Adapter, error) {
	pc, st, err := peft.Read(dir)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	cfgPath := filepath.Join(dir, peft.ConfigFile)
	weights := st.Path()
	spec, err := specFromPEFT(pc, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	want := map[string][]int{} // tensor name -> shape, for every selected module
	for _, l := range spec.layerList(cfg) {
		for _, name := range spec.Targets {
			in, out := model.ProjectionShape(cfg, name)
			want[weightKey(l, name, "A")] = []int{spec.R, in}
			want[weightKey(l, name, "B")] = []int{out, spec.R}
		}
	}
	for _, name := range st.Names() {
		layer, module, _, ok := parseKey(name)
		switch {
		case !ok:
			return nil, fmt.Errorf("%s: tensor %q is not the LoRA weight of a decoder projection", weights, name)
		case layer >= cfg.Layers:
			return nil, fmt.Errorf("%s: tensor %q is for layer %d, but the model has %d layers: the adapter was made for another model", weights, name, layer, cfg.Layers)
		case want[name] == nil:
			return nil, fmt.Errorf("%s: tensor %q is outside what %s selects (target_modules %s, layers_to_transform %s)", weights, name, peft.ConfigFile, describeTargets(pc), describeLayers(spec.Layers))
		}
		info, _ := st.Info(name)
		if shape := want[name]; !slices.Equal(info.Shape, shape) {
			in, out := model.ProjectionShape(cfg, module)
			return nil, fmt.Errorf("%s: tensor %s has shape %v, expected %v (r = %d in %s; this model's %s maps %d to %d): the adapter was made for another model or its config does not match its weights",
				weights, name, info.Shape, shape, spec.R, peft.ConfigFile, module, in, out)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if _, ok := st.Info(name); !ok {
			return nil, fmt.Errorf("%s: no tensor %s, which %s selects", weights, name, peft.ConfigFile)
		}
	}
	a, err := New(spec, cfg, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	a.BaseModel = pc.BaseModelNameOrPath
	for _, w := range a.Weights() {
		if err := readInto(st, w.Key, w.Value); err != nil {
			return nil, fmt.Errorf("%s: %w", weights, err)
		}
	}
	return a, nil
}

// specFromPEFT resolves adapter_config.json's selection against a model:
// the projections target_modules matches, and layers_to_transform.
func specFromPEFT(pc peft.Config, cfg model.Config) (Spec, error) {
	spec := Spec{R: pc.R, Alpha: pc.LoraAlpha, Dropout: pc.LoraDropout, RSLoRA: pc.UseRSLoRA}
	for _, l := range pc.LayersToTransform {
		if l < 0 || l >= cfg.Layers {
			return spec, fmt.Errorf("layers_to_transform: layer %d does not exist in this %d-layer model: the adapter was made for another model", l, cfg.Layers)
		}
	}
	if len(pc.LayersToTransform) > 0 {
		spec.Layers = slices.Sorted(slices.Values(slices.Compact(slices.Sorted(slices.Values(pc.LayersToTransform)))))
	}
	match, err := targetMatcher(pc)
	if err != nil {
		return spec, err
	}
	// PEFT matches full module paths; tune needs the same projections in
	// every adapted layer, which lists (and "all-linear") always give.
	layers := spec.layerList(cfg)
	for _, name := range model.Projections() {
		n := 0
		for _, l := range layers {
			if match(model.LayerPrefix(l) + model.ProjectionPath(name)) {
				n++
			}
		}
		switch n {
		case 0:
		case len(layers):
			spec.Targets = append(spec.Targets, name)
		default:
			return spec, fmt.Errorf("target_modules %s selects %s in %d of %d layers; tune adapts the same projections in every adapted layer (use layers_to_transform)", describeTargets(pc), name, n, len(layers))
		}
	}
	if len(spec.Targets) == 0 {
		return spec, fmt.Errorf("target_modules %s selects no projection of this model (%s)", describeTargets(pc), strings.Join(model.Projections(), ", "))
	}
	return spec, nil
}

// targetMatcher is PEFT's check_target_module_exists for decoder projections:
// a string is a regular expression that must match the whole module path; a
// list entry matches the path or its last components; "all-linear" matches
// every projection.
func targetMatcher(pc peft.Config) (func(path string) bool, error) {
	if pc.TargetRegex != "" {
		if pc.TargetRegex == "all-linear" {
			return func(string) bool { return true }, nil
		}
		re, err := regexp.Compile(`^(?:` + pc.TargetRegex + `)$`)
		if err != nil {
			return nil, fmt.Errorf("target_modules: %q is not a regular expression Go can read: %v", pc.TargetRegex, err)
		}
		return re.MatchString, nil
	}
	if len(pc.TargetModules) == 0 {
		return nil, fmt.Errorf("target_modules: missing; expected the projections the adapter adapts")
	}
	return func(path string) bool {
		for _, t := range pc.TargetModules {
			if t == "all-linear" || path == t || strings.HasSuffix(path, "."+t) {
				return true
			}
		}
		return false
	}, nil
}

func describeTargets(pc peft.Config) string {
	if pc.TargetRegex != "" {
		return strconv.Quote(pc.TargetRegex)
	}
	return "[" + strings.Join(pc.TargetModules, ", ") + "]"
}

func describeLayers(layers []int) string {
	if layers == nil {
		return "all"
	}
	return fmt.Sprint(layers)
}

// layerList is the spec's layers, all of the model's when nil.
func (s Spec) layerList(cfg model.Config) []int {
	if s.Layers != nil {
		return s.Layers
	}
	all := make([]int, cfg.Layers)
	for i := range all {
		all[i] = i
	}
	return all
}

// BaseMismatch compares an adapter's base_model_name_or_path with the model
// directory it is about to be applied to, and returns a warning when they
// name different models ("" when they agree or the adapter names none). A
// hub id and a local copy agree when their last path elements do.
func BaseMismatch(adapterBase, modelDir string) string {
	if adapterBase == "" {
		return ""
	}
	a, errA := os.Stat(adapterBase)
	b, errB := os.Stat(modelDir)
	if errA == nil && errB == nil && os.SameFile(a, b) {
		return ""
	}
	last := func(p string) string {
		return strings.ToLower(path.Base(filepath.ToSlash(filepath.Clean(p))))
	}
	if last(adapterBase) == last(modelDir) {
		return ""
	}
	return fmt.Sprintf("the adapter was trained on %s, not %s: its weights may not suit this model", adapterBase, modelDir)
}

// readInto widens a tensor whose shape FromPEFT has checked into dst.
func readInto(st *safetensors.File, name string, dst []float32) error {
	t, err := st.Tensor(name)
	if err != nil {
		return err
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
