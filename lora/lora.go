package lora

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"

	"github.com/tune-dev/tune/model"
)

// Spec is what the user chose: rank, scale, targets and layers.
type Spec struct {
	R       int
	Alpha   float64
	Dropout float64
	// Targets are Hugging Face module names (q_proj ... down_proj).
	Targets []string
	// Layers lists the layers that get adapters; nil means all.
	Layers []int
	RSLoRA bool
	// DoRA gives every module a magnitude vector (Liu et al. 2024, PEFT's
	// use_dora); see model.LoRA.
	DoRA bool
}

// AllLinear is PEFT's target_modules value meaning every projection of a
// decoder layer (for causal LMs never lm_head); New expands it.
const AllLinear = "all-linear"

// Scale multiplies B·A: alpha/r, or alpha/√r with rsLoRA (Kalajdzievski 2023).
func (s Spec) Scale() float64 {
	if s.RSLoRA {
		return s.Alpha / math.Sqrt(float64(s.R))
	}
	return s.Alpha / float64(s.R)
}

// Module is one adapter: ΔW = scale·B·A on a projection of In inputs and Out outputs.
// A is (R, In) and B is (Out, R), row-major, float32; they are the learnable
// parameters, updated in place by the optimizer. With DoRA, M (Out) is the
// magnitude, learnable too: W = M/‖W₀ + ΔW‖ ⊙ (W₀ + ΔW), row by row.
type Module struct {
	Layer   int
	Name    string // q_proj, ...
	In, Out int
	A, B    []float32
	M       []float32 // nil without DoRA
}

// Key is the module's PEFT name without the .lora_A/.lora_B suffix:
// base_model.model.model.layers.3.self_attn.q_proj.
func (m *Module) Key() string { return moduleKey(m.Layer, m.Name) }

func moduleKey(layer int, projection string) string {
	return "base_model.model." + model.LayerPrefix(layer) + model.ProjectionPath(projection)
}

// weightKey is the PEFT name of a module's A or B matrix (which is "A" or "B").
func weightKey(layer int, projection, which string) string {
	return moduleKey(layer, projection) + ".lora_" + which + ".weight"
}

// magnitudeKey is the PEFT name of a DoRA module's magnitude vector (PEFT
// saves it without the ".weight" its DoraLinearLayer holds it under).
func magnitudeKey(layer int, projection string) string {
	return moduleKey(layer, projection) + ".lora_magnitude_vector"
}

// Weight is one trainable tensor of an adapter.
type Weight struct {
	Key   string    // PEFT name: base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight
	Shape []int     // (R, In) for lora_A, (Out, R) for lora_B, (Out) for the magnitude
	Value []float32 // the module's A, B or M itself, not a copy
}

// ModuleWeights are a module's trainable tensors: lora_A, lora_B, and with
// DoRA lora_magnitude_vector.
func (a *Adapter) ModuleWeights(m *Module) []Weight {
	w := []Weight{
		{weightKey(m.Layer, m.Name, "A"), []int{a.Spec.R, m.In}, m.A},
		{weightKey(m.Layer, m.Name, "B"), []int{m.Out, a.Spec.R}, m.B},
	}
	if m.M != nil {
		w = append(w, Weight{magnitudeKey(m.Layer, m.Name), []int{m.Out}, m.M})
	}
	return w
}

// Weights names every trainable tensor with its key and shape: for each
// module in order, its ModuleWeights. It is the one list that the PEFT
// files, the graph's parameters and the optimizer's moments follow.
func (a *Adapter) Weights() []Weight {
	out := make([]Weight, 0, 3*len(a.Modules))
	for _, m := range a.Modules {
		out = append(out, a.ModuleWeights(m)...)
	}
	return out
}

// Adapter is the set of modules of one run, in layer then projection order.
type Adapter struct {
	Spec    Spec
	Modules []*Module
	// BaseModel is a loaded adapter's base_model_name_or_path.
	BaseModel string
}

// New creates an adapter for a model as PEFT does: A Kaiming-uniform with
// a=√5 (uniform in ±1/√in), B zero, so training starts from the base model.
// A nil rng leaves A zero too, for an adapter about to be loaded. A DoRA
// adapter's magnitudes are zero until InitMagnitudes sets them.
func New(spec Spec, cfg model.Config, rng *rand.Rand) (*Adapter, error) {
	if spec.R <= 0 {
		return nil, fmt.Errorf("lora: rank %d must be positive", spec.R)
	}
	if spec.Alpha <= 0 {
		return nil, fmt.Errorf("lora: alpha %g must be positive", spec.Alpha)
	}
	if len(spec.Targets) == 0 {
		return nil, fmt.Errorf("lora: no target modules")
	}
	projections := model.Projections()
	if len(spec.Targets) == 1 && spec.Targets[0] == AllLinear {
		spec.Targets = projections
	}
	for _, t := range spec.Targets {
		if !slices.Contains(projections, t) {
			return nil, fmt.Errorf("lora: target module %q is not one of %s (or %s alone)", t, strings.Join(projections, ", "), AllLinear)
		}
	}
	layers := spec.Layers
	if layers == nil {
		for i := range cfg.Layers {
			layers = append(layers, i)
		}
	}
	layers = slices.Clone(layers)
	sort.Ints(layers)
	layers = slices.Compact(layers)
	a := &Adapter{Spec: spec}
	for _, l := range layers {
		if l < 0 || l >= cfg.Layers {
			return nil, fmt.Errorf("lora: layer %d does not exist (the model has %d)", l, cfg.Layers)
		}
		for _, name := range projections { // fixed order, whatever the config's
			if !slices.Contains(spec.Targets, name) {
				continue
			}
			in, out := model.ProjectionShape(cfg, name)
			m := &Module{Layer: l, Name: name, In: in, Out: out, A: make([]float32, spec.R*in), B: make([]float32, out*spec.R)}
			if spec.DoRA {
				m.M = make([]float32, out)
			}
			bound := 1 / math.Sqrt(float64(in))
			for i := range m.A {
				if rng == nil {
					break
				}
				m.A[i] = float32((rng.Float64()*2 - 1) * bound)
			}
			a.Modules = append(a.Modules, m)
		}
	}
	return a, nil
}

// Module returns the adapter on a layer's projection, or nil.
func (a *Adapter) Module(layer int, name string) *Module {
	for _, m := range a.Modules {
		if m.Layer == layer && m.Name == name {
			return m
		}
	}
	return nil
}

// ParamCount is the number of trainable values.
func (a *Adapter) ParamCount() int {
	n := 0
	for _, m := range a.Modules {
		n += len(m.A) + len(m.B) + len(m.M)
	}
	return n
}

// Delta returns scale·B·A, the (Out, In) weight change the module makes.
func (a *Adapter) Delta(m *Module) []float32 {
	r, scale := a.Spec.R, float32(a.Spec.Scale())
	d := make([]float32, m.Out*m.In)
	for o := range m.Out {
		row := d[o*m.In : (o+1)*m.In]
		for k := range r {
			b := m.B[o*r+k] * scale
			if b == 0 {
				continue
			}
			for i, av := range m.A[k*m.In : (k+1)*m.In] {
				row[i] += b * av
			}
		}
	}
	return d
}

// LoRA is the module on a layer's projection as the model's layers compute
// it (model.Factors, for decoding), or nil: no dropout.
func (a *Adapter) LoRA(layer int, module string) *model.LoRA {
	m := a.Module(layer, module)
	if m == nil {
		return nil
	}
	return &model.LoRA{A: m.A, B: m.B, M: m.M, R: a.Spec.R, Scale: float32(a.Spec.Scale())}
}

// InitMagnitudes sets each DoRA module's magnitude to the row norms of its
// projection with the update applied, ‖W₀ + scale·B·A‖, as PEFT does when it
// creates the layer: the adapted model starts equal to the plain one.
func (a *Adapter) InitMagnitudes(base *model.Model) {
	for _, m := range a.Modules {
		if m.M != nil {
			copy(m.M, base.DirectionNorms(m.Layer, m.Name, a.LoRA(m.Layer, m.Name)))
		}
	}
}

// MergeInto adds the module's update to its frozen weight w (Out, In), in
// place: w + scale·B·A, and with DoRA that matrix with each row o scaled by
// M_o/‖row o‖, as PEFT's merge does.
func (a *Adapter) MergeInto(m *Module, w []float32) {
	d := a.Delta(m)
	for i, v := range d {
		w[i] += v
	}
	if m.M == nil {
		return
	}
	for o := range m.Out {
		row := w[o*m.In : (o+1)*m.In]
		var sq float64
		for _, v := range row {
			sq += float64(v) * float64(v)
		}
		c := float32(float64(m.M[o]) / math.Sqrt(sq))
		for i := range row {
			row[i] *= c
		}
	}
}
