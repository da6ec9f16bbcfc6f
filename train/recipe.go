package train

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/datasets"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
)

// recipe is one training run: what setup made, and the state the loop moves.
type recipe struct {
	cfg       *configs.Config
	opt       Options
	outDir    string
	ckptDir   string
	modelPath string
	base      *model.Model
	baseFiles model.Checkpoint
	data      *datasets.Data
	loader    *datasets.Loader
	sched     Schedule
	total     int
	*trainer
	st        State
	processed int // tokens the step's micro-batches ran, padding aside
	metrics   *metricsFile
	bar       *progress
	res       Result
	unlock    func() // releases output.dir (LockOutputDir)
	oldLimit  int64  // the memory limit before BeforeWeights set one; 0 when none was set
}

// setup opens the model and the data, makes (or loads) the adapter and the
// optimizer, resumes from a checkpoint when asked, and builds the graph.
func setup(ctx context.Context, cfg *configs.Config, opt Options) (*recipe, error) {
	r := &recipe{cfg: cfg, opt: opt, outDir: cfg.Output.Dir, ckptDir: filepath.Join(cfg.Output.Dir, "checkpoints")}
	if err := r.open(ctx); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *recipe) open(ctx context.Context) (err error) {
	cfg, opt := r.cfg, r.opt
	t := cfg.Train
	if err := CheckConfig(cfg); err != nil {
		return err
	}
	if err := os.MkdirAll(r.outDir, 0o755); err != nil {
		return err
	}
	if r.unlock, err = LockOutputDir(cfg); err != nil {
		return err
	}
	if opt.Resume == "" {
		if steps, _ := listSteps(r.ckptDir); len(steps) > 0 {
			return cfg.Errorf("output.dir", "%s already holds checkpoints of an earlier run (up to step %d): continue it with --resume, or set output.dir elsewhere", r.ckptDir, steps[len(steps)-1])
		}
	}

	// Model.
	if r.modelPath, err = resolveModel(cfg.Model.Path, BuiltinDir(cfg)); err != nil {
		return err
	}
	r.res.ModelDir = r.modelPath
	// Headers and shapes now; every weight is read (checked for NaN) once
	// the data are read, so that Ctrl-C during a long data pass is quick.
	if r.base, r.baseFiles, err = model.Open(r.modelPath); err != nil {
		return err
	}
	mc := r.base.Config // data.seq_len fits it: CheckConfig saw to it

	// Data: indexed and counted here, read row by row as training goes.
	if r.data, err = OpenData(ctx, cfg, r.modelPath, mc.Vocab); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err // Ctrl-C while the data were read: build and train nothing
	}
	logData(r.logf, r.data.Stats)
	if t.EvalEvery > 0 && (r.data.Val == nil || r.data.Val.Examples() == 0) {
		return cfg.Errorf("train.eval_every", "set, but the validation set is empty: raise data.val_ratio or give data.val")
	}
	if r.loader, err = r.data.Train.Loader(loaderOptions(cfg)); err != nil {
		return err
	}
	r.total, _ = runSteps(t, r.loader)
	r.sched = Schedule{Kind: t.Schedule, Peak: t.LR, Total: r.total, Warmup: WarmupSteps(t.WarmupSteps, t.WarmupRatio, r.total)}
	if err := r.sched.Check(); err != nil {
		return err
	}
	if opt.BeforeWeights != nil {
		limit, err := opt.BeforeWeights(ctx, r.total)
		if err != nil {
			return err
		}
		if limit > 0 {
			r.oldLimit = debug.SetMemoryLimit(limit)
		}
	}
	if err := model.CheckFinite(r.baseFiles); err != nil { // reads every weight
		return fmt.Errorf("%s: %w", r.modelPath, err)
	}

	// Adapter, optimizer and graph.
	if err := checkComputeDType(cfg); err != nil {
		return err
	}
	adapter, err := newAdapter(cfg, r.base)
	if err != nil {
		return err
	}
	if w := lora.BaseMismatch(adapter.BaseModel, r.modelPath); w != "" {
		r.logf("warning: lora.init_from: %s", w)
	}
	if cfg.LoRA.InitFrom != "" && adapter.Spec.DoRA != cfg.LoRA.UseDoRA {
		r.logf("warning: lora.init_from: the adapter's use_dora is %v, which this run keeps (lora.use_dora %v does not apply)", adapter.Spec.DoRA, cfg.LoRA.UseDoRA)
	}
	if r.trainer, err = newTrainer(r.base, adapter, t, cfg.Data.SeqLen, t.ActivationCheckpointing); err != nil {
		return err
	}

	// Resume.
	r.st = State{Seed: t.Seed, BaseModel: r.modelPath, Data: r.loader.Cursor()}
	if opt.Resume != "" {
		if err := r.resume(opt.Resume); err != nil {
			return err
		}
	}
	if r.metrics, err = openMetrics(filepath.Join(r.outDir, "metrics.jsonl"), r.st.Step); err != nil {
		return err
	}
	r.res.Step = r.st.Step
	r.bar = newProgress(opt.Progress, r.total, r.st.Step, t.LogEvery)
	r.logf("training %d adapter parameters (%d modules, r=%d) on %d rows of %d tokens: %d steps", adapter.ParamCount(), len(adapter.Modules), adapter.Spec.R, r.loader.RowsInEpoch(r.loader.Epoch()), cfg.Data.SeqLen, r.total)
	return nil
}

// resume loads a step checkpoint ("latest" or a directory) into the adapter,
// the optimizer, the state and the data cursor.
func (r *recipe) resume(dir string) error {
	var err error
	if dir == "latest" {
		if dir, err = LatestCheckpoint(r.ckptDir); err != nil {
			return err
		}
		if dir == "" {
			return fmt.Errorf("resume: no checkpoint under %s", r.ckptDir)
		}
	}
	if r.st, err = LoadCheckpoint(dir, r.base.Config, r.adapter, r.adam); err != nil {
		return err
	}
	if r.st.Seed != r.cfg.Train.Seed {
		return fmt.Errorf("resume: %s was trained with seed %d, the config says %d", dir, r.st.Seed, r.cfg.Train.Seed)
	}
	if r.st.Data.Data == "" {
		return fmt.Errorf("resume: %s has no data cursor (written by an older tune); start afresh", dir)
	}
	if err := r.loader.Seek(r.st.Data); err != nil {
		return fmt.Errorf("resume: %s: %w", dir, err)
	}
	r.logf("resumed from %s at step %d", dir, r.st.Step)
	return nil
}

// step makes one optimizer step over GradAccum micro-batches and returns its
// record. A step whose micro-batches hold no token to predict (padding at the
// end of a tiny dataset) updates nothing and has Tokens 0.
func (r *recipe) step() (StepRecord, error) {
	t := r.cfg.Train
	start := time.Now()
	var lossSum float64
	tokens := 0
	r.processed = 0
	for micro := range t.GradAccum {
		if t.MaxSteps <= 0 && r.loader.Epoch() >= t.Epochs {
			break // the data of the last epoch is used up: a shorter last step
		}
		b, err := r.nextBatch()
		if err != nil {
			return StepRecord{}, err
		}
		l, n, err := r.micro(b, dropoutSeed(t.Seed, r.st.Step, micro))
		if err != nil {
			return StepRecord{}, fmt.Errorf("step %d: %w", r.st.Step+1, err)
		}
		lossSum += l
		tokens += n
	}
	lr := r.sched.LR(r.st.Step)
	rec := StepRecord{Step: r.st.Step + 1, LR: lr}
	if tokens > 0 {
		loss, norm, err := r.update(lossSum, tokens, lr)
		if err != nil {
			return rec, fmt.Errorf("step %d: %w; no checkpoint was written: lower train.lr or check the data", r.st.Step+1, err)
		}
		rec.Loss, rec.GradNorm = loss, norm
	}
	r.st.Step++
	r.st.Tokens += int64(tokens)
	elapsed := time.Since(start)
	rec.Epoch, rec.Tokens, rec.StepTimeS = r.st.Data.Epoch, tokens, elapsed.Seconds()
	rec.TokensPerS = float64(tokens) / elapsed.Seconds()
	rec.Processed, rec.ProcessedPerS = r.processed, float64(r.processed)/elapsed.Seconds()
	rec.PeakMemBytes = peakRSS()
	return rec, nil
}

// nextBatch takes BatchSize rows at the cursor, padding at an epoch's end.
func (r *recipe) nextBatch() (model.Batch, error) {
	var b model.Batch
	for range r.cfg.Train.BatchSize {
		row, ok, err := r.loader.Next()
		if err != nil {
			return b, err
		}
		if !ok {
			row = datasets.PaddingRow(r.cfg.Data.SeqLen)
		}
		b.IDs = append(b.IDs, row.IDs...)
		b.Labels = append(b.Labels, row.Labels...)
		b.Positions = append(b.Positions, row.Positions...)
		b.Segments = append(b.Segments, row.Segments...)
		for _, seg := range row.Segments {
			if seg != 0 { // segment 0 is padding
				r.processed++
			}
		}
	}
	if r.loader.Done() {
		r.loader.NextEpoch()
	}
	r.st.Data = r.loader.Cursor()
	return b, nil
}

// afterStep records the step, evaluates and checkpoints on schedule, and
// reports whether to stop (a stop request: ctx cancelled).
func (r *recipe) afterStep(ctx context.Context, rec StepRecord) (stop bool, err error) {
	r.res.Step = r.st.Step
	if rec.Tokens > 0 {
		if r.res.Steps == 0 {
			r.res.FirstLoss = rec.Loss
		}
		r.res.Steps++
		r.res.LastLoss = rec.Loss
		if err := r.metrics.Write(rec); err != nil {
			return true, err
		}
		if r.opt.OnStep != nil {
			r.opt.OnStep(rec)
		}
	}
	r.bar.Step(rec)

	t := r.cfg.Train
	if t.EvalEvery > 0 && r.data.Val != nil && (r.st.Step%t.EvalEvery == 0 || r.st.Step == r.total) {
		// Not cancelled by a stop request: the step's checkpoint follows.
		ev, err := EvaluateDataset(context.WithoutCancel(ctx), r.base, r.pool, r.data.Val, t.EvalBatches, t.BatchSize, r.cfg.Data.SeqLen, r.adapter.Attach(false))
		if err != nil {
			return true, err
		}
		if err := r.metrics.Write(EvalRecord{Step: r.st.Step, EvalLoss: ev.Loss, EvalPerplexity: ev.Perplexity, EvalTokens: ev.Tokens}); err != nil {
			return true, err
		}
		r.logf("step %d: eval loss %.4f, perplexity %.3f", r.st.Step, ev.Loss, ev.Perplexity)
	}
	stopping := ctx.Err() != nil
	if stopping || (r.cfg.Checkpoint.Every > 0 && r.st.Step%r.cfg.Checkpoint.Every == 0) || r.st.Step == r.total {
		if err := r.checkpoint(); err != nil {
			return true, err
		}
	}
	if stopping {
		r.res.Interrupted = true // the caller says how to resume
		r.bar.End()
	}
	return stopping, nil
}

// checkpoint writes a step checkpoint: adapter, AdamW moments, state.
func (r *recipe) checkpoint() error {
	r.st.AdamStep = r.adam.Step
	dir, err := SaveCheckpoint(r.ckptDir, r.st, r.adapter, r.adam, r.modelPath, r.cfg.Checkpoint.KeepLast)
	if err == nil {
		r.res.Checkpoint = dir
		r.logf("checkpoint %s", dir)
	}
	return err
}

// finish writes the outputs: the PEFT adapter and the loss curve (the caller
// exports the merged model on request: export is above train).
func (r *recipe) finish() error {
	r.bar.End()
	r.release()
	r.res.AdapterDir = filepath.Join(r.outDir, "adapter")
	if err := peft.Write(r.res.AdapterDir, r.adapter.PEFTConfig(r.modelPath), r.adapter.PEFTTensors()); err != nil {
		return err
	}
	if err := r.metrics.Close(); err != nil {
		return err
	}
	return PlotLoss(filepath.Join(r.outDir, "metrics.jsonl"), filepath.Join(r.outDir, "loss.png"))
}

func (r *recipe) close() {
	if r.metrics != nil {
		r.metrics.Close()
	}
	if r.trainer != nil {
		r.trainer.close()
	}
	if r.data != nil {
		r.data.Close()
	}
	if r.baseFiles != nil {
		r.baseFiles.Close()
	}
	if r.unlock != nil {
		r.unlock()
	}
	if r.oldLimit > 0 {
		debug.SetMemoryLimit(r.oldLimit)
	}
}

// logf writes a one-line message (checkpoints written, evaluations) on its
// own line, above the progress bar.
func (r *recipe) logf(format string, a ...any) {
	if r.opt.Log != nil {
		r.bar.Clear()
		fmt.Fprintf(r.opt.Log, format+"\n", a...)
		r.bar.Redraw()
	}
}
