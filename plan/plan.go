package plan

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/model/builtin"
	"github.com/tune-dev/tune/train"
)

// Plan is a config's estimate against this machine, and the verdict.
type Plan struct {
	Machine Machine `json:"machine"`
	Memory  Memory  `json:"memory"`
	// PeakBytes is Memory.PeakBytes, or the first run's peak when a built-in
	// model must be generated and that is higher.
	PeakBytes      int64  `json:"peak_bytes"`
	ReserveBytes   int64  `json:"reserve_bytes"`
	AvailableBytes int64  `json:"available_bytes"`
	Fits           bool   `json:"fits"`
	Verdict        string `json:"verdict"`
	// Close lists the programs to close when the run fits only without them.
	Close []Group `json:"close,omitempty"`
	// StepS is the predicted seconds per optimizer step (0 when not timed).
	StepS float64 `json:"step_s"`
	Speed *Speed  `json:"speed,omitempty"`
	// Steps is the run's optimizer steps; EpochSteps those of one epoch (0
	// with train.max_steps); TotalS the predicted time of the whole run.
	Steps       int          `json:"steps"`
	EpochSteps  int          `json:"epoch_steps,omitempty"`
	TotalS      float64      `json:"total_s"`
	Suggestions []Suggestion `json:"suggestions,omitempty"`
	Tips        []string     `json:"tips,omitempty"`

	counted float64 // the share of tokens the loss counts
}

// Suggestion is a change that makes a run fit, with its estimate.
type Suggestion struct {
	Change    string   `json:"change"`
	Overrides []string `json:"overrides,omitempty"` // key=value to add to the command line
	PeakBytes int64    `json:"peak_bytes"`
	StepS     float64  `json:"step_s,omitempty"`
	Fits      bool     `json:"fits"`
}

// Options choose what Make does besides the memory estimate.
type Options struct {
	// Time measures the step time (or reads it from CacheDir).
	Time     bool
	CacheDir string
	// Base, when > 0, is the resident memory measured with the data open
	// (tune run has them open), and Data the run's figures; otherwise Make
	// opens the data itself and measures.
	Base int64
	Data DataFacts
	// Machine, when set, is used instead of detecting.
	Machine *Machine
}

// DataFacts are what the plan needs of the data: the run's steps, one
// epoch's, and the share of tokens that count in the loss.
type DataFacts struct {
	Steps, EpochSteps int
	Counted           float64
}

// CacheDir is where measurements are kept, per machine: the user's cache.
func CacheDir() string { return filepath.Join(filepath.Dir(train.BenchCacheDir()), "plan") }

// Make plans a run of cfg on this machine.
func Make(ctx context.Context, cfg *configs.Config, opt Options) (*Plan, error) {
	if opt.Base <= 0 { // tune run has checked it
		if err := train.CheckConfig(cfg); err != nil {
			return nil, err
		}
	}
	w, err := ReadWeights(cfg)
	if err != nil {
		return nil, err
	}
	if opt.Base <= 0 {
		if opt.Base, opt.Data, err = measureData(ctx, cfg, w); err != nil {
			return nil, err
		}
	}
	ms := Measured{Base: opt.Base}
	if ms.Code, err = CodeCost(cfg, layerDType(w.DType)); err != nil {
		return nil, err
	}
	if ms.Outputs, err = OutputsCost(); err != nil {
		return nil, err
	}
	p := &Plan{Steps: opt.Data.Steps, EpochSteps: opt.Data.EpochSteps, counted: opt.Data.Counted}
	if opt.Machine != nil {
		p.Machine = *opt.Machine
	} else if p.Machine, err = Detect(ctx); err != nil {
		return nil, err
	}
	if p.Memory, err = EstimateMemory(cfg, w, ms); err != nil {
		return nil, err
	}
	p.PeakBytes = max(p.Memory.PeakBytes, p.Memory.FirstRunBytes)
	if p.ReserveBytes, err = cfg.Resources.ReserveBytes(p.Machine.TotalBytes); err != nil {
		return nil, cfg.Errorf("resources.reserve_memory", "%v", err)
	}
	p.AvailableBytes = p.Machine.AvailableBytes
	p.verdict()
	if opt.Time {
		s, err := MeasureSpeed(ctx, cfg, w, p.Machine, opt.CacheDir)
		if err != nil {
			return nil, err
		}
		p.Speed = &s
		p.StepS = s.StepS(cfg, w.Config.Layers, p.counted)
		p.TotalS = p.StepS * float64(p.Steps)
	}
	if !p.Fits {
		if p.Suggestions, err = suggest(ctx, cfg, w, ms, opt, p); err != nil {
			return nil, err
		}
	}
	if cfg.Train.Threads == 0 && p.Machine.Threads > 2 {
		p.Tips = append(p.Tips, fmt.Sprintf("train.threads=%d leaves a core to the desktop (all %d are used now); resources.nice=10 lets other programs go first", p.Machine.Threads-1, p.Machine.Threads))
	}
	return p, nil
}

// measureData opens the data as tune run does, and measures the process
// with them open: the base the rest of the estimate adds to.
func measureData(ctx context.Context, cfg *configs.Config, w Weights) (int64, DataFacts, error) {
	dir := cfg.Model.Path
	if strings.HasPrefix(dir, "builtin:") {
		dir = train.BuiltinDir(cfg)
	}
	d, steps, epoch, err := train.OpenDataSteps(ctx, cfg, dir, w.Config.Vocab)
	if err != nil {
		return 0, DataFacts{}, err
	}
	defer d.Close()
	base := ResidentNow()
	return base, DataFacts{Steps: steps, EpochSteps: epoch, Counted: 1 - d.Stats.MaskedShare()}, nil
}

// headroom is the share of the room a run may take and still be said to
// fit "with headroom".
const headroom = 0.9

// verdict compares the peak with the room the reserve leaves.
func (p *Plan) verdict() {
	room := p.AvailableBytes - p.ReserveBytes
	need := p.PeakBytes
	switch {
	case float64(need) <= headroom*float64(room):
		p.Fits, p.Verdict = true, "fits with headroom"
		return
	case need <= room:
		p.Fits, p.Verdict = true, "fits, with little headroom"
		return
	}
	freed := int64(0)
	for _, g := range p.Machine.Groups {
		if !g.Closable() {
			continue
		}
		p.Close = append(p.Close, g)
		freed += g.RSSBytes
		if need <= room+freed {
			names := make([]string, len(p.Close))
			for i, g := range p.Close {
				names[i] = fmt.Sprintf("%s (%s, %s)", g.Kind, strings.Join(g.Names, ", "), Bytes(g.RSSBytes))
			}
			p.Verdict = "fits only if you close " + strings.Join(names, " and ")
			return
		}
	}
	p.Close = nil
	p.Verdict = fmt.Sprintf("does not fit: needs %s, and %s is free beyond the %s reserve", Bytes(need), Bytes(max(room, 0)), Bytes(p.ReserveBytes))
}

// suggest tries changes one at a time, each planned as the config would be;
// when none fits alone, it combines them in order until the run fits.
func suggest(ctx context.Context, cfg *configs.Config, w Weights, ms Measured, opt Options, p *Plan) ([]Suggestion, error) {
	room := p.AvailableBytes - p.ReserveBytes
	type change struct {
		text  string
		over  []string
		apply func(c *configs.Config, w *Weights)
	}
	var changes []change
	t := cfg.Train
	if !t.ActivationCheckpointing {
		changes = append(changes, change{"activation checkpointing (about a third more compute)", []string{"train.activation_checkpointing=true"},
			func(c *configs.Config, _ *Weights) { c.Train.ActivationCheckpointing = true }})
	}
	for b := t.BatchSize / 2; b >= 1; b /= 2 {
		acc := t.GradAccum * t.BatchSize / b
		changes = append(changes, change{fmt.Sprintf("batch %d with %d-step accumulation (the same tokens per step)", b, acc),
			[]string{fmt.Sprintf("train.batch_size=%d", b), fmt.Sprintf("train.grad_accum=%d", acc)},
			func(c *configs.Config, _ *Weights) { c.Train.BatchSize, c.Train.GradAccum = b, acc }})
	}
	for s := cfg.Data.SeqLen / 2; s >= 64; s /= 2 {
		changes = append(changes, change{fmt.Sprintf("sequences of %d tokens", s), []string{fmt.Sprintf("data.seq_len=%d", s)},
			func(c *configs.Config, _ *Weights) { c.Data.SeqLen = s }})
	}
	if cfg.LoRA.R > 4 && cfg.LoRA.InitFrom == "" {
		r := cfg.LoRA.R / 2
		changes = append(changes, change{fmt.Sprintf("LoRA rank %d", r), []string{fmt.Sprintf("lora.r=%d", r), fmt.Sprintf("lora.alpha=%g", cfg.LoRA.Alpha/2)},
			func(c *configs.Config, _ *Weights) { c.LoRA.R, c.LoRA.Alpha = r, cfg.LoRA.Alpha/2 }})
	}
	if len(cfg.LoRA.TargetModules) > 2 && cfg.LoRA.InitFrom == "" {
		changes = append(changes, change{"adapters on q_proj and v_proj only", []string{"lora.target_modules=[q_proj,v_proj]"},
			func(c *configs.Config, _ *Weights) { c.LoRA.TargetModules = []string{"q_proj", "v_proj"} }})
	}
	if f32 := w.ByDType[dtype.F32]; f32 > w.Mapped()/2 {
		changes = append(changes, change{"the base weights stored as bf16 (save the model with torch_dtype=torch.bfloat16)", nil,
			func(_ *configs.Config, w *Weights) {
				by := map[dtype.DType]int64{}
				for dt, b := range w.ByDType {
					if dt == dtype.F32 {
						dt, b = dtype.BF16, b/2
					}
					by[dt] += b
				}
				w.ByDType, w.DType = by, dtype.BF16
			}})
	}
	// A smaller model of the ones tune knows the shape of.
	for _, name := range configs.BuiltinModels() {
		spec, _ := builtin.Named(name)
		if sw, err := builtinWeights(&configs.Config{Model: configs.Model{Path: "builtin:" + name}}, name); err == nil && sw.Mapped() < w.Mapped()/2 {
			changes = append(changes, change{fmt.Sprintf("a smaller model, the size of builtin:%s (%d layers, hidden %d)", name, spec.Layers, spec.Hidden), []string{"model.path=builtin:" + name},
				func(c *configs.Config, w *Weights) { c.Model.Path = "builtin:" + name; *w = sw }})
		}
	}

	try := func(apply []change) (Suggestion, error) {
		c := *cfg
		c.LoRA.TargetModules = append([]string(nil), cfg.LoRA.TargetModules...)
		cw := w
		s := Suggestion{}
		var texts []string
		for _, ch := range apply {
			ch.apply(&c, &cw)
			texts = append(texts, ch.text)
			s.Overrides = append(s.Overrides, ch.over...)
		}
		s.Change = strings.Join(texts, ", ")
		mem, err := EstimateMemory(&c, cw, ms)
		if err != nil {
			return s, err
		}
		s.PeakBytes = max(mem.PeakBytes, mem.FirstRunBytes)
		s.Fits = s.PeakBytes <= room
		if s.Fits && opt.Time { // the layer timed is of the changed shape: no model file is needed
			sp, err := MeasureSpeed(ctx, &c, cw, p.Machine, opt.CacheDir)
			if err != nil {
				return s, err
			}
			s.StepS = sp.StepS(&c, cw.Config.Layers, p.counted)
		}
		return s, nil
	}
	var out []Suggestion
	seen := map[string]bool{} // the first fitting batch and sequence length only
	for _, ch := range changes {
		kind := strings.SplitN(ch.text, " ", 2)[0]
		if seen[kind] {
			continue
		}
		s, err := try([]change{ch})
		if err != nil {
			return nil, err
		}
		if s.Fits {
			seen[kind] = true
			out = append(out, s)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	// Nothing alone: combine, the cheapest in quality first.
	var combo []change
	best := int64(math.MaxInt64)
	for _, ch := range changes {
		combo = append(combo, ch)
		s, err := try(combo)
		if err != nil {
			return nil, err
		}
		if s.Fits {
			return []Suggestion{s}, nil
		}
		if s.PeakBytes < best {
			best = s.PeakBytes
		} else {
			combo = combo[:len(combo)-1] // it did not help: leave it out
		}
	}
	return nil, nil
}
