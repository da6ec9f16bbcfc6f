package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	G "gorgonia.org/gorgonia"

	"github.com/tune-dev/tune/checkpoints"
	"github.com/tune-dev/tune/checkpoints/hf"
	"github.com/tune-dev/tune/checkpoints/peft"
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
}

// Result says how a run ended.
type Result struct {
	Steps       int // steps made by this invocation
	Step        int // the run's step count at the end (after a resume, more than Steps)
	FirstLoss   float64
	LastLoss    float64
	Interrupted bool   // stopped by a signal after writing a checkpoint
	AdapterDir  string // the final PEFT adapter ("" when interrupted)
	Checkpoint  string // the last step checkpoint written
	ModelDir    string // the base model's directory (builtin:tiny: the one generated under the output)
}

// ErrNonFinite is returned, wrapped in a message saying whether the loss or
// the gradient norm it was, when a step's values stop being finite numbers.
var ErrNonFinite = errors.New("not a finite number")

// Run trains a LoRA adapter as cfg says. It is the whole training loop, read
// top to bottom: set up the model, data, adapter and optimizer; resume; then
// for each step accumulate gradients over micro-batches, clip, update, log,
// evaluate and checkpoint. Cancelling ctx (SIGINT/SIGTERM) finishes the
// current step, writes a checkpoint and returns with Interrupted set.
func Run(ctx context.Context, cfg *configs.Config, opt Options) (Result, error) {
	var res Result
	var bar progress
	logf := func(format string, a ...any) {
		if opt.Log != nil {
			bar.Clear() // a message on its own line, then the bar again
			fmt.Fprintf(opt.Log, format+"\n", a...)
		}
	}
	t := cfg.Train
	outDir := cfg.Output.Dir
	ckptDir := filepath.Join(outDir, "checkpoints")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return res, err
	}

	// Model.
	modelPath, err := resolveModel(cfg.Model.Path, outDir)
	if err != nil {
		return res, err
	}
	res.ModelDir = modelPath
	base, md, err := model.Open(modelPath)
	if err != nil {
		return res, err
	}
	defer md.Close()
	mc := base.Config

	// Data: indexed and counted here, read row by row as training goes.
	data, err := OpenData(cfg, modelPath, mc.Vocab)
	if err != nil {
		return res, err
	}
	defer data.Close()
	logData(logf, data.Stats)
	if t.EvalEvery > 0 && (data.Val == nil || data.Val.Examples() == 0) {
		return res, &configs.FieldError{File: cfg.Path, Path: "train.eval_every", Msg: "set, but the validation set is empty: raise data.val_ratio or give data.val"}
	}
	loader, err := data.Train.Loader(datasets.LoaderOptions{Seq: cfg.Data.SeqLen, Packing: cfg.Data.Packing, Shuffle: cfg.Data.Shuffle, Seed: t.Seed})
	if err != nil {
		return res, err
	}
	total := t.MaxSteps
	if total <= 0 {
		// Each epoch ends with a padded micro-batch; steps take GradAccum of them.
		micro := 0
		for e := range t.Epochs {
			micro += (loader.RowsInEpoch(e) + t.BatchSize - 1) / t.BatchSize
		}
		total = (micro + t.GradAccum - 1) / t.GradAccum
	}
	sched := Schedule{Kind: t.Schedule, Peak: t.LR, Total: total, Warmup: WarmupSteps(t.WarmupSteps, t.WarmupRatio, total)}
	if err := sched.Check(); err != nil {
		return res, err
	}

	if cfg.Data.SeqLen > mc.MaxPositions {
		return res, &configs.FieldError{File: cfg.Path, Path: "data.seq_len", Msg: fmt.Sprintf("%d exceeds the model's max_position_embeddings %d", cfg.Data.SeqLen, mc.MaxPositions)}
	}
	if opt.Resume == "" {
		if steps, _ := listSteps(ckptDir); len(steps) > 0 {
			return res, fmt.Errorf("%s already holds checkpoints of an earlier run (up to step %d): continue it with --resume, or set output.dir elsewhere", ckptDir, steps[len(steps)-1])
		}
	}

	// Adapter and optimizer.
	adapter, err := newAdapter(cfg, mc)
	if err != nil {
		return res, err
	}
	params := ParamsOf(adapter)
	sizes := make([]int, len(params))
	for i, p := range params {
		sizes[i] = len(p)
	}
	adam := NewAdamW(sizes, t.Beta1, t.Beta2, t.Eps, t.WeightDecay)

	// Resume.
	st := State{Seed: t.Seed, BaseModel: modelPath, Data: loader.Cursor()}
	if opt.Resume != "" {
		dir := opt.Resume
		if dir == "latest" {
			if dir, err = LatestCheckpoint(ckptDir); err != nil {
				return res, err
			}
			if dir == "" {
				return res, fmt.Errorf("resume: no checkpoint under %s", ckptDir)
			}
		}
		if st, err = LoadCheckpoint(dir, mc, adapter, adam); err != nil {
			return res, err
		}
		if st.Seed != t.Seed {
			return res, fmt.Errorf("resume: %s was trained with seed %d, the config says %d", dir, st.Seed, t.Seed)
		}
		if st.Data.Data == "" {
			return res, fmt.Errorf("resume: %s has no data cursor (written by an older tune); start afresh", dir)
		}
		if err := loader.Seek(st.Data); err != nil {
			return res, fmt.Errorf("resume: %s: %w", dir, err)
		}
		logf("resumed from %s at step %d", dir, st.Step)
	}
	metrics, err := openMetrics(filepath.Join(outDir, "metrics.jsonl"), st.Step)
	if err != nil {
		return res, err
	}
	defer metrics.Close()

	// Graph: loss and its gradient with respect to every A and B.
	at := adapter.Attach(true)
	gr, err := base.Build(t.BatchSize, cfg.Data.SeqLen, at)
	if err != nil {
		return res, err
	}
	if _, err := G.Grad(gr.Loss, at.Nodes()...); err != nil {
		return res, fmt.Errorf("gradient graph: %w", err)
	}
	vm := G.NewTapeMachine(gr.G, G.BindDualValues(at.Nodes()...))
	defer vm.Close()
	nodeOf := map[string]*G.Node{}
	for _, p := range at.Params() {
		nodeOf[p.Key] = p.Node
	}
	gradNodes := make([]*G.Node, 0, len(params))
	for _, w := range adapter.Weights() {
		gradNodes = append(gradNodes, nodeOf[w.Key])
	}
	grads := make([][]float32, len(params))
	for i := range grads {
		grads[i] = make([]float32, len(params[i]))
	}

	bar = newProgress(opt.Progress, total, st.Step)
	defer bar.Finish()
	logf("training %d adapter parameters (%d modules, r=%d) on %d rows of %d tokens: %d steps", adapter.ParamCount(), len(adapter.Modules), adapter.Spec.R, loader.RowsInEpoch(loader.Epoch()), cfg.Data.SeqLen, total)

	// nextBatch takes BatchSize rows at the cursor, padding at an epoch's end.
	nextBatch := func() (model.Batch, error) {
		var b model.Batch
		for range t.BatchSize {
			r, ok, err := loader.Next()
			if err != nil {
				return b, err
			}
			if !ok {
				r = datasets.PaddingRow(cfg.Data.SeqLen)
			}
			b.IDs = append(b.IDs, r.IDs...)
			b.Labels = append(b.Labels, r.Labels...)
			b.Positions = append(b.Positions, r.Positions...)
			b.Segments = append(b.Segments, r.Segments...)
		}
		if loader.Done() {
			loader.NextEpoch()
		}
		st.Data = loader.Cursor()
		return b, nil
	}

	checkpoint := func() error {
		st.AdamStep = adam.Step
		dir, err := SaveCheckpoint(ckptDir, st, adapter, adam, modelPath, cfg.Checkpoint.KeepLast)
		if err == nil {
			res.Checkpoint = dir
			logf("checkpoint %s", dir)
		}
		return err
	}

	for st.Step < total {
		start := time.Now()
		for _, g := range grads {
			clear(g)
		}
		var lossSum float64
		tokens := 0
		for micro := range t.GradAccum {
			if t.MaxSteps <= 0 && loader.Epoch() >= t.Epochs {
				break // the data of the last epoch is used up: a shorter last step
			}
			b, err := nextBatch()
			if err != nil {
				return res, err
			}
			if err := gr.Feed(b); err != nil {
				return res, err
			}
			if err := at.SetSeed(dropoutSeed(t.Seed, st.Step, micro)); err != nil {
				return res, err
			}
			if err := vm.RunAll(); err != nil {
				return res, fmt.Errorf("step %d: %w", st.Step+1, err)
			}
			n := gr.Counted()
			if n > 0 {
				loss := float64(gr.Loss.Value().Data().(float32))
				lossSum += loss * float64(n)
				tokens += n
				// Token-weighted: the sum over micro-batches is the gradient of
				// the mean over all their tokens, as one large batch would give.
				for i, node := range gradNodes {
					gv, err := node.Grad()
					if err != nil {
						return res, err
					}
					g := gv.Data().([]float32)
					axpyF32(float32(n), g, grads[i])
					clear(g) // Gorgonia adds each run's gradient to the last
				}
			}
			vm.Reset()
		}
		if tokens == 0 {
			st.Step++ // an all-padding step (tiny dataset): nothing to learn
			continue
		}
		for _, g := range grads {
			scaleF32(g, 1/float32(tokens))
		}
		loss := lossSum / float64(tokens)
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return res, fmt.Errorf("step %d: the loss is %w (%g); the adapter was not updated and no checkpoint was written: lower train.lr or check the data", st.Step+1, ErrNonFinite, loss)
		}
		norm := ClipGradNorm(grads, t.MaxGradNorm)
		if math.IsNaN(norm) || math.IsInf(norm, 0) {
			return res, fmt.Errorf("step %d: the gradient norm is %w; the adapter was not updated", st.Step+1, ErrNonFinite)
		}
		lr := sched.LR(st.Step)
		adam.Update(params, grads, lr)
		st.Step++
		res.Step = st.Step
		st.Tokens += int64(tokens)
		elapsed := time.Since(start)
		if res.Steps == 0 {
			res.FirstLoss = loss
		}
		res.Steps++
		res.LastLoss = loss
		tps := float64(tokens) / elapsed.Seconds()
		rec := StepRecord{Step: st.Step, Epoch: st.Data.Epoch, Loss: loss, LR: lr, GradNorm: norm, Tokens: tokens, TokensPerS: tps, StepTimeS: elapsed.Seconds(), PeakMemBytes: peakRSS()}
		if err := metrics.Write(rec); err != nil {
			return res, err
		}
		if opt.OnStep != nil {
			opt.OnStep(rec)
		}
		bar.Step(st.Step, loss, lr, tps)

		if t.EvalEvery > 0 && data.Val != nil && (st.Step%t.EvalEvery == 0 || st.Step == total) {
			// Not cancelled by a stop request: the step's checkpoint follows.
			ev, err := evaluate(context.WithoutCancel(ctx), base, adapter, data.Val, cfg)
			if err != nil {
				return res, err
			}
			if err := metrics.Write(EvalRecord{Step: st.Step, EvalLoss: ev.Loss, EvalPerplexity: ev.Perplexity, EvalTokens: ev.Tokens}); err != nil {
				return res, err
			}
			logf("step %d: eval loss %.4f, perplexity %.3f", st.Step, ev.Loss, ev.Perplexity)
		}
		stopping := ctx.Err() != nil
		if stopping || (cfg.Checkpoint.Every > 0 && st.Step%cfg.Checkpoint.Every == 0) || st.Step == total {
			if err := checkpoint(); err != nil {
				return res, err
			}
		}
		if stopping {
			res.Interrupted = true
			logf("stopped at step %d; resume with --resume", st.Step)
			return res, nil
		}
	}

	// Outputs: the PEFT adapter and the loss curve (the caller exports the
	// merged model on request: export is above train).
	res.AdapterDir = filepath.Join(outDir, "adapter")
	if err := peft.Write(res.AdapterDir, adapter.PEFTConfig(modelPath), adapter.PEFTTensors()); err != nil {
		return res, err
	}
	if err := metrics.Close(); err != nil {
		return res, err
	}
	if err := PlotLoss(filepath.Join(outDir, "metrics.jsonl"), filepath.Join(outDir, "loss.png")); err != nil {
		return res, err
	}
	return res, nil
}

// resolveModel turns "builtin:tiny" into a generated model directory under the
// run's output (made once, deterministic), and leaves a path alone.
func resolveModel(path, outDir string) (string, error) {
	name, ok := strings.CutPrefix(path, "builtin:")
	if !ok {
		return path, nil
	}
	if name != "tiny" {
		return "", fmt.Errorf("model.path: unknown built-in model %q (tune has builtin:tiny)", path)
	}
	dir := filepath.Join(outDir, "base-model")
	if _, err := os.Stat(filepath.Join(dir, hf.ConfigFile)); err == nil {
		return dir, nil
	}
	err := checkpoints.WriteDirAtomic(dir, func(tmp string) error {
		return builtin.Write(tmp, builtin.Demo())
	})
	return dir, err
}

// OpenData opens the data a config names for a model: its tokenizer (from
// modelDir, when some source is not pre-tokenized) and its vocabulary size.
func OpenData(cfg *configs.Config, modelDir string, vocab int) (*datasets.Data, error) {
	spec := dataSpec(cfg)
	spec.Vocab = vocab
	if spec.NeedsTokenizer() {
		tok, err := tokenizer.Load(modelDir)
		if err != nil {
			return nil, fmt.Errorf("data.format: %s data need the model's tokenizer: %w", cfg.Data.Format, err)
		}
		spec.Tokenizer = tok
	}
	return datasets.Open(spec)
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
}

// newAdapter makes the adapter the config asks for, or loads lora.init_from.
// With init_from, the adapter's layout (r, alpha, targets, layers, rsLoRA)
// is the saved one's; dropout, a training choice, is the config's.
func newAdapter(cfg *configs.Config, mc model.Config) (*lora.Adapter, error) {
	if cfg.LoRA.InitFrom != "" {
		a, err := lora.FromPEFT(cfg.LoRA.InitFrom, mc)
		if err == nil {
			a.Spec.Dropout = cfg.LoRA.Dropout
		}
		return a, err
	}
	for i, l := range cfg.LoRA.Layers {
		if l >= mc.Layers {
			return nil, &configs.FieldError{File: cfg.Path, Path: fmt.Sprintf("lora.layers[%d]", i), Msg: fmt.Sprintf("layer %d does not exist: the model has %d (0 to %d)", l, mc.Layers, mc.Layers-1)}
		}
	}
	spec := lora.Spec{R: cfg.LoRA.R, Alpha: cfg.LoRA.Alpha, Dropout: cfg.LoRA.Dropout, Targets: cfg.LoRA.TargetModules, Layers: cfg.LoRA.Layers, RSLoRA: cfg.LoRA.UseRSLoRA}
	if n := cfg.LoRA.LastLayers; n > 0 {
		spec.Layers = nil
		for l := max(0, mc.Layers-n); l < mc.Layers; l++ {
			spec.Layers = append(spec.Layers, l)
		}
	}
	return lora.New(spec, mc, rand.New(rand.NewPCG(cfg.Train.Seed, 0xa)))
}

// evaluate runs the validation set with the adapter, dropout off.
func evaluate(ctx context.Context, m *model.Model, a *lora.Adapter, val *datasets.Dataset, cfg *configs.Config) (EvalResult, error) {
	return EvaluateDataset(ctx, m, val, cfg.Train.EvalBatches, cfg.Train.BatchSize, cfg.Data.SeqLen, a.Attach(false))
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

func axpyF32(alpha float32, x, y []float32) {
	for i, v := range x {
		y[i] += alpha * v
	}
}

func scaleF32(v []float32, alpha float32) {
	for i := range v {
		v[i] *= alpha
	}
}
