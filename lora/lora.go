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
// parameters, updated in place by the optimizer.
type Module struct {
	Layer   int
	Name    string // q_proj, ...
	In, Out int
	A, B    []float32
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

// Weight is one trainable tensor of an adapter.
type Weight struct {
	Key   string    // PEFT name: base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight
	Shape []int     // (R, In) for lora_A, (Out, R) for lora_B
	Value []float32 // the module's A or B itself, not a copy
}

// ModuleWeights are a module's two trainable tensors, lora_A then lora_B.
func (a *Adapter) ModuleWeights(m *Module) [2]Weight {
	return [2]Weight{
		{weightKey(m.Layer, m.Name, "A"), []int{a.Spec.R, m.In}, m.A},
		{weightKey(m.Layer, m.Name, "B"), []int{m.Out, a.Spec.R}, m.B},
	}
}

// Weights names every trainable tensor with its key and shape: for each
// module in order, lora_A then lora_B. It is the one list that the PEFT
// files, the graph's parameters and the optimizer's moments follow.
func (a *Adapter) Weights() []Weight {
	out := make([]Weight, 0, 2*len(a.Modules))
	for _, m := range a.Modules {
		w := a.ModuleWeights(m)
		out = append(out, w[0], w[1])
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
// A nil rng leaves A zero too, for an adapter about to be loaded.
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
		n += len(m.A) + len(m.B)
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
	return &model.LoRA{A: m.A, B: m.B, R: a.Spec.R, Scale: float32(a.Spec.Scale())}
}
