package lora

import (
	"cmp"
	"fmt"
	"maps"
	"math"
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
//
// Modules of different ranks or scales (rank_pattern, alpha_pattern) become
// one rank, the largest: A gets zero rows and B zero columns, which add
// nothing and, having zero gradients, stay zero in training; B takes the
// ratio of the module's scale to the adapter's. ΔW is unchanged.
func FromPEFT(dir string, cfg model.Config) (*Adapter, error) {
	f, err := openPEFT(dir, func(layer int, module string) (int, int, bool) {
		if layer >= cfg.Layers {
			return 0, 0, false
		}
		in, out := model.ProjectionShape(cfg, module)
		return in, out, true
	}, fmt.Sprintf(" of this %d-layer model", cfg.Layers))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pc := f.Config
	spec := Spec{R: pc.R, Alpha: pc.LoraAlpha, Dropout: pc.LoraDropout, RSLoRA: pc.UseRSLoRA}
	// The targets and layers that count are the ones with weights in the file.
	var layers []int
	for _, m := range f.Modules {
		if !slices.Contains(layers, m.Layer) {
			layers = append(layers, m.Layer)
		}
		if !slices.Contains(spec.Targets, m.Name) {
			spec.Targets = append(spec.Targets, m.Name)
		}
	}
	if len(layers) < cfg.Layers {
		spec.Layers = layers
	}
	if pc.RankPattern != nil || pc.AlphaPattern != nil {
		spec.R, spec.Alpha = commonLayout(f.Modules, pc.UseRSLoRA)
	}
	a, err := New(spec, cfg, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	scale := spec.Scale()
	for _, pm := range f.Modules {
		m := a.Module(pm.Layer, pm.Name)
		ma, mb, err := f.Factors(pm)
		if err != nil {
			return nil, err
		}
		copy(m.A, ma) // rows beyond pm.R stay zero
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

// OpenPEFT opens an adapter directory without a model: the shapes of its
// modules come from the file, checked against their ranks.
func OpenPEFT(dir string) (*PEFTFile, error) {
	return openPEFT(dir, nil, "")
}

// openPEFT opens dir; shape, when not nil, gives a module's (in, out) in the
// model, or false when the model has no such module (described by what).
func openPEFT(dir string, shape func(layer int, module string) (in, out int, ok bool), what string) (*PEFTFile, error) {
	pc, st, err := peft.Read(dir)
	if err != nil {
		return nil, err
	}
	f := &PEFTFile{Dir: dir, Config: pc, st: st}
	if err := f.index(shape, what); err != nil {
		st.Close()
		return nil, err
	}
	return f, nil
}

func (f *PEFTFile) index(shape func(int, string) (int, int, bool), what string) error {
	layout, err := f.Config.Layout()
	if err != nil {
		return fmt.Errorf("%s: %w", f.Dir, err)
	}
	projections := model.Projections()
	type found struct{ a, b bool }
	seen := map[[2]int]*found{}
	for _, name := range f.st.Names() {
		layer, module, which, ok := parseKey(name)
		if ok && shape != nil {
			_, _, ok = shape(layer, module)
		}
		if !ok {
			return fmt.Errorf("%s: tensor %q is not a LoRA weight of a projection%s", f.Dir, name, what)
		}
		k := [2]int{layer, slices.Index(projections, module)}
		if seen[k] == nil {
			seen[k] = &found{}
		}
		if which == "A" {
			seen[k].a = true
		} else {
			seen[k].b = true
		}
	}
	if len(seen) == 0 {
		return fmt.Errorf("%s: the adapter has no LoRA weights", f.Dir)
	}
	keys := slices.SortedFunc(maps.Keys(seen), func(x, y [2]int) int {
		return cmp.Or(cmp.Compare(x[0], y[0]), cmp.Compare(x[1], y[1]))
	})
	for _, k := range keys {
		m := PEFTModule{Layer: k[0], Name: projections[k[1]]}
		if !seen[k].a || !seen[k].b {
			return fmt.Errorf("%s: %s has only one of lora_A and lora_B", f.Dir, m.Key())
		}
		name := model.LayerPrefix(m.Layer) + model.ProjectionPath(m.Name)
		m.R = layout.Rank(name)
		alpha := layout.Alpha(name)
		m.Scale = Spec{R: m.R, Alpha: alpha, RSLoRA: f.Config.UseRSLoRA}.Scale()
		ia, _ := f.st.Info(m.Key() + ".lora_A.weight")
		ib, _ := f.st.Info(m.Key() + ".lora_B.weight")
		if shape != nil {
			m.In, m.Out, _ = shape(m.Layer, m.Name)
		} else if len(ia.Shape) == 2 && len(ib.Shape) == 2 {
			m.In, m.Out = ia.Shape[1], ib.Shape[0]
		}
		for _, c := range []struct {
			info safetensors.TensorInfo
			want []int
		}{{ia, []int{m.R, m.In}}, {ib, []int{m.Out, m.R}}} {
			if !slices.Equal(c.info.Shape, c.want) || m.In <= 0 || m.Out <= 0 {
				return fmt.Errorf("%s: tensor %s: shape %v, expected %v (r = %d)", f.Dir, c.info.Name, c.info.Shape, c.want, m.R)
			}
		}
		f.Modules = append(f.Modules, m)
	}
	return nil
}

// Factors reads a module's A (R, In) and B (Out, R) as float32.
func (f *PEFTFile) Factors(m PEFTModule) (a, b []float32, err error) {
	a, b = make([]float32, m.R*m.In), make([]float32, m.Out*m.R)
	if err := readInto(f.st, m.Key()+".lora_A.weight", []int{m.R, m.In}, a); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", f.Dir, err)
	}
	if err := readInto(f.st, m.Key()+".lora_B.weight", []int{m.Out, m.R}, b); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", f.Dir, err)
	}
	return a, b, nil
}

// Close releases the weights file.
func (f *PEFTFile) Close() error { return f.st.Close() }

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
