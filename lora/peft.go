package lora

import (
	"cmp"
	"fmt"
	"maps"
	"math"
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
	c := peft.NewConfig(base, a.Spec.R, a.Spec.Alpha, a.Spec.Dropout, targets, a.Spec.Layers, a.Spec.RSLoRA)
	c.UseDora = a.Spec.DoRA
	return c
}

// FromPEFT loads an adapter directory for a model. The adapter goes where
// its adapter_config.json says, as PEFT applies it: the projections that
// target_modules selects (names matched as suffixes of the module path, a
// string as a regular expression over it, or "all-linear"), in the layers of
// layers_to_transform (all when absent). Everything is checked against the
// safetensors header before any memory is allocated: every selected module
// has both matrices, no tensor lies outside the selection, and each shape is
// [r, in] or [out, r] for the module's r (r, or rank_pattern's) and this
// model's projection sizes, so an adapter made for another model or a config
// that lies about r is refused, naming the tensor. A and B are read as F32,
// F16 or BF16.
//
// Modules of different ranks or scales (rank_pattern, alpha_pattern) become
// one rank, the largest: A gets zero rows and B zero columns, which add
// nothing and, having zero gradients, stay zero in training; B takes the
// ratio of the module's scale to the adapter's. ΔW is unchanged.
//
// A DoRA adapter (use_dora) has each module's lora_magnitude_vector (Out)
// too, and no other adapter may have one.
func FromPEFT(dir string, cfg model.Config) (*Adapter, error) {
	pc, st, err := peft.Read(dir)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, peft.ConfigFile)
	spec, err := specFromPEFT(pc, cfg)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	f := &PEFTFile{Dir: dir, Config: pc, st: st}
	defer f.Close()
	if err := f.index(&selection{cfg: cfg, spec: spec}); err != nil {
		return nil, err
	}
	if pc.RankPattern != nil || pc.AlphaPattern != nil {
		spec.R, spec.Alpha = commonLayout(f.Modules, pc.UseRSLoRA)
	}
	a, err := New(spec, cfg, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	a.BaseModel = pc.BaseModelNameOrPath
	scale := spec.Scale()
	for _, pm := range f.Modules {
		m := a.Module(pm.Layer, pm.Name)
		ma, mb, err := f.Factors(pm)
		if err != nil {
			return nil, err
		}
		copy(m.A, ma) // rows beyond pm.R stay zero
		if m.M != nil {
			if err := f.Magnitude(pm, m.M); err != nil {
				return nil, err
			}
		}
		ratio := float32(pm.Scale / scale)
		for o := range m.Out {
			for k, v := range mb[o*pm.R : (o+1)*pm.R] {
				if ratio != 1 {
					v *= ratio
				}
				m.B[o*spec.R+k] = v
			}
		}
	}
	return a, nil
}

// commonLayout is the rank and alpha one adapter can hold every module with:
// the largest rank, and the scale of the first module of that rank, so
// that such modules keep their B exactly.
func commonLayout(ms []PEFTModule, rslora bool) (r int, alpha float64) {
	var scale float64
	for _, m := range ms {
		if m.R > r {
			r, scale = m.R, m.Scale
		}
	}
	if rslora {
		return r, scale * math.Sqrt(float64(r))
	}
	return r, scale * float64(r)
}

// PEFTModule is one module of a PEFT adapter as stored: its own rank (from
// r or rank_pattern) and scale (from lora_alpha or alpha_pattern, over r or
// √r with rsLoRA). A is (R, In), B is (Out, R).
type PEFTModule struct {
	Layer   int
	Name    string
	R       int
	Scale   float64
	In, Out int
}

// Key is the module's PEFT name without the .lora_A/.lora_B suffix.
func (m PEFTModule) Key() string {
	return (&Module{Layer: m.Layer, Name: m.Name}).Key()
}

// PEFTFile is an open PEFT adapter directory whose factors are read one
// module at a time, so that tools over many adapters (merge) hold little.
type PEFTFile struct {
	Dir     string
	Config  peft.Config
	Modules []PEFTModule // layer, then projection order
	st      *safetensors.File
}

// OpenPEFT opens an adapter directory without a model: the modules are the
// ones with weights in the file, and their shapes come from the file,
// checked against their ranks.
func OpenPEFT(dir string) (*PEFTFile, error) {
	pc, st, err := peft.Read(dir)
	if err != nil {
		return nil, err
	}
	f := &PEFTFile{Dir: dir, Config: pc, st: st}
	if err := f.index(nil); err != nil {
		st.Close()
		return nil, err
	}
	return f, nil
}

// selection is what FromPEFT holds a file to: the model, and the modules
// adapter_config.json selects in it (specFromPEFT's Targets and Layers).
type selection struct {
	cfg  model.Config
	spec Spec
}

// index lists the file's modules with their ranks and scales from the
// config's layout, checking every tensor's shape from the header alone.
// With a selection, the file must hold exactly the selected modules and the
// shapes are the model's; without one, they are the file's.
func (f *PEFTFile) index(sel *selection) error {
	layout, err := f.Config.Layout()
	if err != nil {
		return fmt.Errorf("%s: %w", f.Dir, err)
	}
	weights := f.st.Path()
	projections := model.Projections()
	type found struct{ a, b, m bool }
	seen := map[[2]int]*found{}
	selected := map[[2]int]bool{}
	if sel != nil {
		for _, l := range sel.spec.layerList(sel.cfg) {
			for _, name := range sel.spec.Targets {
				selected[[2]int{l, slices.Index(projections, name)}] = true
			}
		}
	}
	for _, name := range f.st.Names() {
		layer, module, which, ok := parseKey(name)
		k := [2]int{layer, slices.Index(projections, module)}
		switch {
		case !ok:
			return fmt.Errorf("%s: tensor %q is not the LoRA weight of a decoder projection", weights, name)
		case sel == nil:
		case layer >= sel.cfg.Layers:
			return fmt.Errorf("%s: tensor %q is for layer %d, but the model has %d layers: the adapter was made for another model", weights, name, layer, sel.cfg.Layers)
		case !selected[k]:
			return fmt.Errorf("%s: tensor %q is outside what %s selects (target_modules %s, layers_to_transform %s)", weights, name, peft.ConfigFile, describeTargets(f.Config), describeLayers(sel.spec.Layers))
		}
		if seen[k] == nil {
			seen[k] = &found{}
		}
		switch which {
		case "A":
			seen[k].a = true
		case "B":
			seen[k].b = true
		default:
			if !f.Config.UseDora {
				return fmt.Errorf("%s: tensor %q is a DoRA magnitude, but %s has no use_dora: true", weights, name, peft.ConfigFile)
			}
			seen[k].m = true
		}
	}
	for k := range selected {
		if seen[k] == nil {
			seen[k] = &found{}
		}
	}
	if len(seen) == 0 {
		return fmt.Errorf("%s: the adapter has no LoRA weights", weights)
	}
	keys := slices.SortedFunc(maps.Keys(seen), func(x, y [2]int) int {
		return cmp.Or(cmp.Compare(x[0], y[0]), cmp.Compare(x[1], y[1]))
	})
	for _, k := range keys {
		m := PEFTModule{Layer: k[0], Name: projections[k[1]]}
		for _, c := range []struct {
			has   bool
			which string
		}{{seen[k].a, "A"}, {seen[k].b, "B"}} {
			if c.has {
				continue
			}
			if sel != nil {
				return fmt.Errorf("%s: no tensor %s, which %s selects", weights, weightKey(m.Layer, m.Name, c.which), peft.ConfigFile)
			}
			return fmt.Errorf("%s: %s has only one of lora_A and lora_B", weights, m.Key())
		}
		if f.Config.UseDora && !seen[k].m {
			return fmt.Errorf("%s: no tensor %s, which use_dora: true in %s requires", weights, magnitudeKey(m.Layer, m.Name), peft.ConfigFile)
		}
		name := model.LayerPrefix(m.Layer) + model.ProjectionPath(m.Name)
		m.R = layout.Rank(name)
		m.Scale = Spec{R: m.R, Alpha: layout.Alpha(name), RSLoRA: f.Config.UseRSLoRA}.Scale()
		ia, _ := f.st.Info(weightKey(m.Layer, m.Name, "A"))
		ib, _ := f.st.Info(weightKey(m.Layer, m.Name, "B"))
		if sel != nil {
			m.In, m.Out = model.ProjectionShape(sel.cfg, m.Name)
		} else if len(ia.Shape) == 2 && len(ib.Shape) == 2 {
			m.In, m.Out = ia.Shape[1], ib.Shape[0]
		}
		checks := []struct {
			info safetensors.TensorInfo
			want []int
		}{{ia, []int{m.R, m.In}}, {ib, []int{m.Out, m.R}}}
		if f.Config.UseDora {
			im, _ := f.st.Info(magnitudeKey(m.Layer, m.Name))
			checks = append(checks, struct {
				info safetensors.TensorInfo
				want []int
			}{im, []int{m.Out}})
		}
		for _, c := range checks {
			if slices.Equal(c.info.Shape, c.want) && m.In > 0 && m.Out > 0 {
				continue
			}
			if sel != nil {
				return fmt.Errorf("%s: tensor %s has shape %v, expected %v (r = %d in %s; this model's %s maps %d to %d): the adapter was made for another model or its config does not match its weights",
					weights, c.info.Name, c.info.Shape, c.want, m.R, peft.ConfigFile, m.Name, m.In, m.Out)
			}
			return fmt.Errorf("%s: tensor %s has shape %v, expected %v (r = %d in %s)", weights, c.info.Name, c.info.Shape, c.want, m.R, peft.ConfigFile)
		}
		f.Modules = append(f.Modules, m)
	}
	return nil
}

// Factors reads a module's A (R, In) and B (Out, R) as float32.
func (f *PEFTFile) Factors(m PEFTModule) (a, b []float32, err error) {
	a, b = make([]float32, m.R*m.In), make([]float32, m.Out*m.R)
	if err := readInto(f.st, weightKey(m.Layer, m.Name, "A"), []int{m.R, m.In}, a); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", f.st.Path(), err)
	}
	if err := readInto(f.st, weightKey(m.Layer, m.Name, "B"), []int{m.Out, m.R}, b); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", f.st.Path(), err)
	}
	return a, b, nil
}

// Magnitude reads a DoRA module's magnitude vector (Out) into dst.
func (f *PEFTFile) Magnitude(m PEFTModule, dst []float32) error {
	if err := readInto(f.st, magnitudeKey(m.Layer, m.Name), []int{m.Out}, dst); err != nil {
		return fmt.Errorf("%s: %w", f.st.Path(), err)
	}
	return nil
}

// Close releases the weights file.
func (f *PEFTFile) Close() error { return f.st.Close() }

// specFromPEFT resolves adapter_config.json's selection against a model:
// the projections target_modules matches, and layers_to_transform.
func specFromPEFT(pc peft.Config, cfg model.Config) (Spec, error) {
	spec := Spec{R: pc.R, Alpha: pc.LoraAlpha, Dropout: pc.LoraDropout, RSLoRA: pc.UseRSLoRA, DoRA: pc.UseDora}
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

// readInto widens a tensor of the given shape into dst.
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

// parseKey splits base_model.model.model.layers.N.<path>.lora_{A,B}.weight
// (which is "A" or "B") and ...<path>.lora_magnitude_vector (which is "M").
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
		if name == magnitudeKey(layer, mod) {
			return layer, mod, "M", true
		}
	}
	return 0, "", "", false
}
