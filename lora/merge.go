package lora

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"

	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/checkpoints/safetensors"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/model"
)

// The ways PlanMerge combines adapters (tune merge --method).
const (
	MergeCat  = "cat"  // exact: the factors side by side, rank Σ rᵢ
	MergeSVD  = "svd"  // the best rank-R approximation of the sum
	MergeTIES = "ties" // TIES-merging (trim, elect sign, disjoint mean), then as svd
)

// DefaultDensity is the share of each update's entries TIES keeps, the
// TIES paper's top 20%.
const DefaultDensity = 0.2

// MergeOptions says how adapters are merged.
type MergeOptions struct {
	Method string // MergeCat, MergeSVD or MergeTIES; "" is MergeSVD
	// Weights has one weight per adapter. Nil means the mean update for cat
	// and svd (1/n each) and 1 each for ties, whose disjoint mean already
	// averages the adapters that agree.
	Weights []float64
	// R is the rank of an svd or ties result; 0 means the largest input rank.
	R int
	// Density is the share of each update's entries ties keeps; 0 means
	// DefaultDensity.
	Density float64
	// Base is the result's base_model_name_or_path. Empty means the inputs'
	// own, which must then agree: setting it says they are the same model.
	Base string
	// Model, when known, is the base's configuration: every module is checked
	// against it, and it tells whether the result covers every layer.
	Model *model.Config
}

// MergePlan is a set of open adapters checked to share a base, with the
// layout of their merge. Write computes it module by module as it writes.
type MergePlan struct {
	opt     MergeOptions
	inputs  []*PEFTFile
	weights []float64
	modules []mergeModule
	config  peft.Config
}

// mergeModule is one module of the result and the inputs that have it.
type mergeModule struct {
	PEFTModule // R is the result's rank for this module; Scale is 1
	parts      []mergePart
}

type mergePart struct {
	file   *PEFTFile
	module PEFTModule
	weight float64
}

// MergeReport says what Write did.
type MergeReport struct {
	Modules int
	R       int // the rank of the result (cat: of most modules)
	// Kept is, for the module that lost most, the share of its merged update's
	// squared Frobenius norm that the rank-R result keeps (1 for cat).
	Kept      float64
	WorstKept string // that module's name
	Patterned int    // cat: modules listed in rank_pattern
}

// PlanMerge opens the adapters in dirs and checks that they can be merged:
// LoRA adapters of one base (the same base_model_name_or_path when they name
// one, unless opt.Base is set; the same shape for every module they share,
// and one hidden, intermediate, query and key-value width across all
// modules; and, with opt.Model, the model's shapes). The caller closes the
// plan. Errors are the input's fault: they name the file.
func PlanMerge(dirs []string, opt MergeOptions) (*MergePlan, error) {
	p := &MergePlan{opt: opt}
	if err := p.plan(dirs); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *MergePlan) plan(dirs []string) error {
	if err := p.opt.Validate(len(dirs)); err != nil {
		return err
	}
	p.weights = p.opt.Weights
	if p.weights == nil {
		w := 1 / float64(len(dirs))
		if p.opt.Method == MergeTIES {
			w = 1
		}
		for range dirs {
			p.weights = append(p.weights, w)
		}
	}
	for _, dir := range dirs {
		f, err := OpenPEFT(dir)
		if err != nil {
			return err
		}
		p.inputs = append(p.inputs, f)
		if f.Config.UseDora {
			// The magnitudes rescale W₀ + ΔW row by row: updates do not add.
			return fmt.Errorf("%s: use_dora: true: DoRA adapters cannot be merged with others (a DoRA update is not a low-rank sum); merge each into the model (tune export --format merged)", filepath.Join(dir, peft.ConfigFile))
		}
	}
	if err := p.checkBase(); err != nil {
		return err
	}
	p.layout()
	return nil
}

// Validate checks the options for merging n adapters and fills in the
// defaults (Method, Density).
func (opt *MergeOptions) Validate(n int) error {
	if opt.Method == "" {
		opt.Method = MergeSVD
	}
	if !slices.Contains([]string{MergeCat, MergeSVD, MergeTIES}, opt.Method) {
		return fmt.Errorf("merge method %q: expected cat, svd or ties", opt.Method)
	}
	if n == 0 {
		return fmt.Errorf("merge needs at least one adapter")
	}
	if opt.Weights != nil && len(opt.Weights) != n {
		return fmt.Errorf("%d weights for %d adapters", len(opt.Weights), n)
	}
	for _, w := range opt.Weights {
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return fmt.Errorf("weight %v is not a finite number", w)
		}
	}
	if opt.R < 0 || (opt.R > 0 && opt.Method == MergeCat) {
		return fmt.Errorf("rank %d: a positive rank applies to svd and ties (cat's rank is the sum of the inputs')", opt.R)
	}
	if opt.Density == 0 {
		opt.Density = DefaultDensity
	}
	if !(opt.Density > 0 && opt.Density <= 1) {
		return fmt.Errorf("density %v: expected a share in (0, 1]", opt.Density)
	}
	return nil
}

// checkBase refuses adapters of different base models.
func (p *MergePlan) checkBase() error {
	cfgPath := func(f *PEFTFile) string { return filepath.Join(f.Dir, peft.ConfigFile) }
	var named *PEFTFile
	for _, f := range p.inputs {
		name := f.Config.BaseModelNameOrPath
		if name == "" || p.opt.Base != "" {
			continue
		}
		if named == nil {
			named = f
		} else if other := named.Config.BaseModelNameOrPath; name != other {
			return fmt.Errorf("%s: base_model_name_or_path %q, but %s has %q: adapters of different base models cannot be merged (if both name one model, say which with --model)",
				cfgPath(f), name, cfgPath(named), other)
		}
	}
	// Each width of the model, as the first module that showed it.
	type width struct {
		n    int
		from string
	}
	widths := map[string]width{}
	shapes := map[[2]int]width{} // (layer, projection) -> in·(1<<32)+out
	for _, f := range p.inputs {
		for _, m := range f.Modules {
			from := fmt.Sprintf("%s (%s: %d×%d)", f.Dir, m.Key(), m.Out, m.In)
			if c := p.opt.Model; c != nil {
				in, out := model.ProjectionShape(*c, m.Name)
				if m.Layer >= c.Layers || in != m.In || out != m.Out {
					return fmt.Errorf("%s: %s is %d×%d in layer %d; the base model has %d layers and %s of %d×%d: the adapter is of another model",
						f.Dir, m.Name, m.Out, m.In, m.Layer, c.Layers, m.Name, out, in)
				}
			}
			k := [2]int{m.Layer, slices.Index(model.Projections(), m.Name)}
			if prev, ok := shapes[k]; ok && prev.n != m.In<<32|m.Out {
				return fmt.Errorf("%s, but %s: adapters of different base models cannot be merged", from, prev.from)
			}
			shapes[k] = width{m.In<<32 | m.Out, from}
			for what, n := range moduleWidths(m) {
				if prev, ok := widths[what]; ok && prev.n != n {
					return fmt.Errorf("%s implies a %s of %d, but %s one of %d: adapters of different base models cannot be merged", from, what, n, prev.from, prev.n)
				}
				widths[what] = width{n, from}
			}
		}
	}
	return nil
}

// moduleWidths are the model widths a projection's shape shows.
func moduleWidths(m PEFTModule) map[string]int {
	switch m.Name {
	case "q_proj":
		return map[string]int{"hidden size": m.In, "query width": m.Out}
	case "k_proj", "v_proj":
		return map[string]int{"hidden size": m.In, "key-value width": m.Out}
	case "o_proj":
		return map[string]int{"hidden size": m.Out, "query width": m.In}
	case "gate_proj", "up_proj":
		return map[string]int{"hidden size": m.In, "intermediate size": m.Out}
	default: // down_proj
		return map[string]int{"hidden size": m.Out, "intermediate size": m.In}
	}
}

// layout decides the result's modules, ranks and adapter_config.json. Its
// modules are every target on every layer that any input adapts (PEFT
// adapts the product of target_modules and layers); one that no input has
// is written as zeros.
func (p *MergePlan) layout() {
	projections := model.Projections()
	parts := map[[2]int][]mergePart{}
	shapes := map[string][2]int{}
	var layers, names []int
	maxR := 0
	for i, f := range p.inputs {
		for _, m := range f.Modules {
			k := [2]int{m.Layer, slices.Index(projections, m.Name)}
			parts[k] = append(parts[k], mergePart{f, m, p.weights[i]})
			shapes[m.Name] = [2]int{m.In, m.Out}
			if !slices.Contains(layers, k[0]) {
				layers = append(layers, k[0])
			}
			if !slices.Contains(names, k[1]) {
				names = append(names, k[1])
			}
			maxR = max(maxR, m.R)
		}
	}
	slices.Sort(layers)
	slices.Sort(names)
	r := p.opt.R
	if r == 0 {
		r = maxR
	}
	counts := map[int]int{}
	for _, l := range layers {
		for _, n := range names {
			name := projections[n]
			ps := parts[[2]int{l, n}]
			m := mergeModule{PEFTModule: PEFTModule{Layer: l, Name: name, R: r, Scale: 1, In: shapes[name][0], Out: shapes[name][1]}, parts: ps}
			if p.opt.Method == MergeCat {
				m.R = 0
				for _, pt := range ps {
					m.R += pt.module.R
				}
				if m.R > 0 {
					counts[m.R]++
				}
			}
			p.modules = append(p.modules, m)
		}
	}
	if p.opt.Method == MergeCat {
		// The rank most modules have is r; the others go to rank_pattern.
		r = 0
		for rank, n := range counts {
			if n > counts[r] || (n == counts[r] && rank > r) {
				r = rank
			}
		}
	}
	first := p.inputs[0].Config
	base := p.opt.Base
	for _, f := range p.inputs {
		if base == "" {
			base = f.Config.BaseModelNameOrPath
		}
	}
	var targets []string
	for _, n := range names {
		targets = append(targets, projections[n])
	}
	all := false
	if c := p.opt.Model; c != nil {
		all = len(layers) == c.Layers
	} else {
		for _, f := range p.inputs {
			all = all || f.Config.LayersToTransform == nil
		}
	}
	if all {
		layers = nil
	}
	// Scale 1 everywhere (alpha = r), as PEFT's add_weighted_adapter writes.
	p.config = peft.NewConfig(base, r, float64(r), first.LoraDropout, targets, layers, false)
	for i := range p.modules {
		m := &p.modules[i]
		if m.R == 0 {
			m.R = r // no input has it: zeros of the common rank
		}
		if m.R != r {
			name := model.LayerPrefix(m.Layer) + model.ProjectionPath(m.Name)
			p.config.RankPattern = append(p.config.RankPattern, peft.PatternEntry{Key: name, Value: float64(m.R)})
			p.config.AlphaPattern = append(p.config.AlphaPattern, peft.PatternEntry{Key: name, Value: float64(m.R)})
		}
	}
}

// Config is the adapter_config.json Write will write.
func (p *MergePlan) Config() peft.Config { return p.config }

// Write merges the adapters into the PEFT adapter directory out (replaced
// atomically), computing modules while they are written: a few at once, one
// per CPU, a few ahead of the writer, so memory holds a few modules' factors
// (ties: their dense updates, so ties does one at a time).
func (p *MergePlan) Write(ctx context.Context, out string) (MergeReport, error) {
	rep := MergeReport{Modules: len(p.modules), R: p.config.R, Kept: 1, Patterned: len(p.config.RankPattern)}
	var tensors []safetensors.Tensor
	for _, m := range p.modules {
		tensors = append(tensors,
			safetensors.Tensor{Name: m.Key() + ".lora_A.weight", DType: dtype.F32, Shape: []int{m.R, m.In}},
			safetensors.Tensor{Name: m.Key() + ".lora_B.weight", DType: dtype.F32, Shape: []int{m.Out, m.R}})
	}
	ahead := runtime.GOMAXPROCS(0)
	if p.opt.Method == MergeTIES {
		ahead = 1
	}
	results := p.compute(ctx, ahead)
	defer results.stop()
	var pendingB []byte
	err := peft.WriteFunc(out, p.config, tensors, func(i int) ([]byte, error) {
		if i%2 == 1 {
			b := pendingB
			pendingB = nil
			return b, nil
		}
		res, err := results.next(i / 2)
		if err != nil {
			return nil, err
		}
		if res.kept < rep.Kept {
			rep.Kept, rep.WorstKept = res.kept, p.modules[i/2].Key()
		}
		pendingB = safetensors.F32("", nil, res.b).Data
		return safetensors.F32("", nil, res.a).Data, nil
	})
	return rep, err
}

// merged is one module's result.
type merged struct {
	a, b []float32
	kept float64
	err  error
}

// pipeline computes the modules in order on goroutines, at most ahead of
// them started and not yet taken by next.
type pipeline struct {
	out    []chan merged
	slots  chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ctx    context.Context
}

func (p *MergePlan) compute(ctx context.Context, ahead int) *pipeline {
	ctx, cancel := context.WithCancel(ctx)
	pl := &pipeline{out: make([]chan merged, len(p.modules)), slots: make(chan struct{}, ahead), cancel: cancel, ctx: ctx}
	for i := range pl.out {
		pl.out[i] = make(chan merged, 1)
	}
	pl.wg.Add(1)
	go func() {
		defer pl.wg.Done()
		for i, m := range p.modules {
			select {
			case pl.slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			pl.wg.Add(1)
			go func() {
				defer pl.wg.Done()
				var res merged
				res.a, res.b, res.kept, res.err = p.mergeModule(m)
				pl.out[i] <- res
			}()
		}
	}()
	return pl
}

// next waits for module i's result.
func (pl *pipeline) next(i int) (merged, error) {
	select {
	case res := <-pl.out[i]:
		<-pl.slots
		return res, res.err
	case <-pl.ctx.Done():
		return merged{}, pl.ctx.Err()
	}
}

// stop cancels what is left and waits for the goroutines, which read the
// inputs' memory maps: the plan must not close them before.
func (pl *pipeline) stop() {
	pl.cancel()
	pl.wg.Wait()
}

// mergeModule reads a module's inputs and merges them: A (R, In), B (Out, R),
// and the share of the merged update's squared norm the result keeps.
func (p *MergePlan) mergeModule(m mergeModule) (a, b []float32, kept float64, err error) {
	var fs []factors
	for _, pt := range m.parts {
		fa, fb, err := pt.file.Factors(pt.module)
		if err != nil {
			return nil, nil, 0, err
		}
		fs = append(fs, factors{A: fa, B: fb, R: pt.module.R, Scale: pt.module.Scale, Weight: pt.weight})
	}
	var e energy
	switch p.opt.Method {
	case MergeCat:
		a, b = catMerge(m.In, m.Out, m.R, fs)
		return a, b, 1, nil
	case MergeSVD:
		a, b, e = svdMerge(m.In, m.Out, m.R, fs)
	default:
		a, b, e = tiesMerge(m.In, m.Out, m.R, fs, p.opt.Density)
	}
	return a, b, e.keptShare(), nil
}

// Close releases the inputs.
func (p *MergePlan) Close() error {
	var first error
	for _, f := range p.inputs {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	p.inputs = nil
	return first
}

// String describes a report for people.
func (r MergeReport) String() string {
	s := strconv.Itoa(r.Modules) + " modules, rank " + strconv.Itoa(r.R)
	if r.Patterned > 0 {
		s += fmt.Sprintf(" (%d modules of other ranks in rank_pattern)", r.Patterned)
	}
	if r.Kept < 1 {
		s += fmt.Sprintf("; the rank-%d result keeps %.2f%% of the merged update's squared norm at worst (%s)", r.R, 100*r.Kept, r.WorstKept)
	}
	return s
}
