package train

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tune-dev/tune/checkpoints"
	"github.com/tune-dev/tune/checkpoints/hf"
	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/datasets"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
	"github.com/tune-dev/tune/tokenizer"
)

// Options are the per-invocation choices that are not part of a config.
type Options struct {
	// Resume is "" (start fresh), "latest" or a step checkpoint directory.
	Resume string
	// Progress receives the progress bar; nil for none.
	Progress io.Writer
	// Log receives one-line messages (checkpoints written, evaluations).
	Log io.Writer
	// OnStep, if set, sees every step's record after the update.
	OnStep func(StepRecord)
	// BeforeWeights, if set, is called once the data are read and before
	// any weight is (nor any graph built), with the run's step count: an
	// error stops the run there (tune run refuses a run its plan says will
	// not fit), and a limit > 0 becomes the run's memory limit
	// (debug.SetMemoryLimit), so that the plan holds.
	BeforeWeights func(ctx context.Context, steps int) (limit int64, err error)
	// Watch, if set, is asked every WatchEvery (default 1 s) while training;
	// an answer other than "" stops the run after the current step, with a
	// checkpoint, as Ctrl-C does, and becomes Result.Stopped. tune run
	// watches the memory the rest of the machine has left.
	Watch      func() string
	WatchEvery time.Duration
}

// Result says how a run ended.
type Result struct {
	Steps       int // steps made by this invocation
	Step        int // the run's step count at the end (after a resume, more than Steps)
	FirstLoss   float64
	LastLoss    float64
	Interrupted bool   // stopped by a signal or by Watch, after writing a checkpoint
	Stopped     string // why Watch stopped the run ("" for a signal)
	AdapterDir  string // the final PEFT adapter ("" when interrupted)
	Checkpoint  string // the last step checkpoint written
	ModelDir    string // the base model's directory (builtin:tiny: the one generated under the output)
}

// ErrNonFinite is returned, wrapped in a message saying whether the loss or
// the gradient norm it was, when a step's values stop being finite numbers.
var ErrNonFinite = errors.New("not a finite number")

// Run trains a LoRA adapter as cfg says, as torchtune's recipes do: set up
// the model, data, adapter and optimizer (resuming when asked), then for each
// step accumulate gradients over micro-batches and update (step), log,
// evaluate and checkpoint (afterStep), and write the outputs (finish).
// Cancelling ctx (SIGINT/SIGTERM) finishes the current step, writes a
// checkpoint and returns with Interrupted set.
func Run(ctx context.Context, cfg *configs.Config, opt Options) (Result, error) {
	if err := setNice(cfg.Resources.Nice); err != nil {
		return Result{}, cfg.Errorf("resources.nice", "%v", err)
	}
	ctx, stopped := watch(ctx, opt)
	defer stopped() // ends the watch
	r, err := setup(ctx, cfg, opt)
	if errors.Is(err, context.Canceled) {
		return Result{Interrupted: true}, nil // stopped before training: nothing to save
	}
	if err != nil {
		return Result{}, err
	}
	defer r.close()
	for r.st.Step < r.total {
		rec, err := r.step()
		if err != nil {
			return r.res, err
		}
		if stop, err := r.afterStep(ctx, rec); stop || err != nil {
			r.res.Stopped = stopped()
			return r.res, err
		}
	}
	return r.res, r.finish()
}

// resolveModel turns "builtin:NAME" into a generated model directory at dir
// (made once, deterministic), and leaves a path alone.
func resolveModel(path, dir string) (string, error) {
	name, ok := strings.CutPrefix(path, "builtin:")
	if !ok {
		return path, nil
	}
	spec, ok := builtin.Named(name)
	if !ok {
		return "", fmt.Errorf("model.path: unknown built-in model %q (tune has builtin:%s)", path, strings.Join(configs.BuiltinModels(), ", builtin:"))
	}
	if _, err := os.Stat(filepath.Join(dir, hf.ConfigFile)); err == nil {
		return dir, nil
	}
	err := checkpoints.WriteDirAtomic(dir, func(tmp string) error {
		return builtin.Write(tmp, spec)
	})
	return dir, err
}

// builtinName is NAME of "builtin:NAME", or "".
func builtinName(path string) string {
	name, _ := strings.CutPrefix(path, "builtin:")
	return name
}

// OpenData opens the data a config names for a model: its tokenizer (from
// modelDir, when some source is not pre-tokenized) and its vocabulary size.
// Cancelling ctx stops the reading.
func OpenData(ctx context.Context, cfg *configs.Config, modelDir string, vocab int) (*datasets.Data, error) {
	spec := dataSpec(cfg)
	spec.Vocab, spec.Context = vocab, ctx
	if spec.NeedsTokenizer() {
		tok, err := tokenizer.Load(modelDir)
		if err != nil {
			return nil, fmt.Errorf("data.format: %s data need the model's tokenizer: %w", cfg.Data.Format, err)
		}
		spec.Tokenizer = tok
	}
	return datasets.Open(spec)
}

// OpenDataSteps opens a config's data as tune run does (OpenData) and
// counts the run's optimizer steps and one epoch's (0 with train.max_steps).
// The caller closes the data.
func OpenDataSteps(ctx context.Context, cfg *configs.Config, modelDir string, vocab int) (d *datasets.Data, steps, epochSteps int, err error) {
	if d, err = OpenData(ctx, cfg, modelDir, vocab); err != nil {
		return nil, 0, 0, err
	}
	l, err := d.Train.Loader(loaderOptions(cfg))
	if err != nil {
		d.Close()
		return nil, 0, 0, err
	}
	steps, epochSteps = runSteps(cfg.Train, l)
	return d, steps, epochSteps, nil
}

func loaderOptions(cfg *configs.Config) datasets.LoaderOptions {
	return datasets.LoaderOptions{Seq: cfg.Data.SeqLen, Packing: cfg.Data.Packing, Shuffle: cfg.Data.Shuffle, Seed: cfg.Train.Seed}
}

// runSteps is a run's optimizer steps: train.max_steps, or every epoch's
// micro-batches (each epoch ends with a padded one) in steps of GradAccum;
// and the first epoch's steps (0 with max_steps).
func runSteps(t configs.Train, l *datasets.Loader) (total, epoch int) {
	if t.MaxSteps > 0 {
		return t.MaxSteps, 0
	}
	micro := 0
	for e := range t.Epochs {
		micro += (l.RowsInEpoch(e) + t.BatchSize - 1) / t.BatchSize
	}
	first := (l.RowsInEpoch(0) + t.BatchSize - 1) / t.BatchSize
	return (micro + t.GradAccum - 1) / t.GradAccum, (first + t.GradAccum - 1) / t.GradAccum
}

// logData reports the counting pass.
func logData(logf func(string, ...any), s datasets.Stats) {
	logf("data: %d examples, %d tokens for training; %d examples for validation; %.1f%% of tokens masked", s.TrainExamples, s.TrainTokens, s.ValExamples, 100*s.MaskedShare())
	if s.Truncated+s.Dropped+s.Untrainable+s.NotText > 0 {
		logf("data: %d truncated, %d dropped as too long, %d with nothing to train on, %d non-text files skipped", s.Truncated, s.Dropped, s.Untrainable, s.NotText)
	}
	if s.Skipped > 0 {
		logf("data: %d bad records skipped (data.skip_bad_records), the first: %s", s.Skipped, strings.Join(s.FirstBad, "; "))
	}
	if s.NotUTF8 > 0 {
		logf("data: %d records held bytes that are not UTF-8, read as U+FFFD", s.NotUTF8)
	}
}

// newAdapter makes the adapter the config asks for, or loads lora.init_from.
// With init_from, the adapter's layout (r, alpha, targets, layers, rsLoRA,
// DoRA) is the saved one's; dropout, a training choice, is the config's. A
// new DoRA adapter's magnitudes start at the base's row norms.
func newAdapter(cfg *configs.Config, base *model.Model) (*lora.Adapter, error) {
	a, err := adapterLayout(cfg, base.Config)
	if err != nil || cfg.LoRA.InitFrom != "" {
		return a, err
	}
	a.InitMagnitudes(base)
	return a, nil
}

// adapterLayout is newAdapter without the base's weights: the adapter's
// tensors, with DoRA magnitudes not yet set (what a plan sizes).
func adapterLayout(cfg *configs.Config, mc model.Config) (*lora.Adapter, error) {
	if cfg.LoRA.InitFrom != "" {
		a, err := lora.FromPEFT(cfg.LoRA.InitFrom, mc)
		if err == nil {
			a.Spec.Dropout = cfg.LoRA.Dropout
		}
		return a, err
	}
	// lora.layers are in range: CheckConfig saw to it.
	spec := lora.Spec{R: cfg.LoRA.R, Alpha: cfg.LoRA.Alpha, Dropout: cfg.LoRA.Dropout, Targets: cfg.LoRA.TargetModules, Layers: cfg.LoRA.Layers, RSLoRA: cfg.LoRA.UseRSLoRA, DoRA: cfg.LoRA.UseDoRA}
	if n := cfg.LoRA.LastLayers; n > 0 {
		spec.Layers = nil
		for l := max(0, mc.Layers-n); l < mc.Layers; l++ {
			spec.Layers = append(spec.Layers, l)
		}
	}
	return lora.New(spec, mc, rand.New(rand.NewPCG(cfg.Train.Seed, 0xa)))
}

// dropoutSeed derives a micro-batch's dropout masks from the run's seed and
// the step: one stream per step, its micro-th draw.
func dropoutSeed(seed uint64, step, micro int) int32 {
	r := rand.New(rand.NewPCG(seed, uint64(step)))
	for range micro {
		r.Uint32()
	}
	return int32(r.Uint32())
}

// watch runs opt.Watch every opt.WatchEvery until the returned function is
// called, which ends it and says why the watch stopped the run ("" when it
// did not). A stop cancels the returned context, as Ctrl-C cancels ctx.
func watch(ctx context.Context, opt Options) (context.Context, func() string) {
	if opt.Watch == nil {
		return ctx, func() string { return "" }
	}
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	var reason atomic.Pointer[string]
	every := cmp.Or(opt.WatchEvery, time.Second)
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				if why := opt.Watch(); why != "" {
					reason.Store(&why)
					cancel(errors.New(why))
					return
				}
			}
		}
	}()
	var once sync.Once
	return ctx, func() string {
		once.Do(func() { close(done) })
		if p := reason.Load(); p != nil {
			return *p
		}
		return ""
	}
}
