package configs

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Validate checks every value and every combination of values, and returns Errors
// listing all problems (nil when valid). It does not touch the file system: whether
// model.path and the data files exist is checked when the run starts. Each error has
// File set to c.Path and no line; Load replaces them with the value's source.
func (c *Config) Validate() error {
	v := validator{file: c.Path}

	// model
	switch {
	case c.Model.Path == "":
		v.add("model.path", "required: the Hugging Face model directory")
	case strings.HasPrefix(c.Model.Path, builtinPre):
		if !slices.Contains(BuiltinModels(), strings.TrimPrefix(c.Model.Path, builtinPre)) {
			v.add("model.path", "unknown builtin model %s; tune has builtin:%s", quote(c.Model.Path), strings.Join(BuiltinModels(), ", builtin:"))
		}
	}

	// lora
	l := c.LoRA
	v.positiveInt("lora.r", l.R)
	v.positiveFloat("lora.alpha", l.Alpha)
	v.unitInterval("lora.dropout", l.Dropout)
	v.targetModules(l.TargetModules)
	seenLayer := map[int]bool{}
	for _, n := range l.Layers {
		switch {
		case n < 0:
			v.add("lora.layers", "must be >= 0, got %d", n)
		case seenLayer[n]:
			v.add("lora.layers", "duplicate layer %d", n)
		}
		seenLayer[n] = true
	}
	v.nonNegative("lora.last_layers", l.LastLayers)
	if l.LastLayers > 0 && len(l.Layers) > 0 {
		v.add("lora.last_layers", "cannot be combined with lora.layers; set one of them")
	}
	if strings.HasPrefix(l.InitFrom, builtinPre) {
		v.add("lora.init_from", "must be a PEFT adapter directory, got %s", quote(l.InitFrom))
	}

	// data
	d := c.Data
	switch {
	case d.Train == "" && len(d.Sources) == 0:
		v.add("data.train", "required: the training data file, or %s; or data.sources", BuiltinData)
	case d.Train != "" && len(d.Sources) > 0:
		v.add("data.sources", "cannot be combined with data.train; set one of them")
	case strings.HasPrefix(d.Train, builtinPre) && d.Train != BuiltinData:
		v.add("data.train", "unknown builtin data set %s; the only one is %s", quote(d.Train), BuiltinData)
	}
	for i, src := range d.Sources {
		at := fmt.Sprintf("data.sources[%d]", i)
		switch {
		case src.Path == "":
			v.add(at+".path", "required: a file, a directory or a glob")
		case strings.HasPrefix(src.Path, builtinPre):
			v.add(at+".path", "builtin data sets go in data.train, not data.sources; got %s", quote(src.Path))
		}
		if src.Format != "" {
			v.oneOf(at+".format", src.Format, Formats())
		}
		if !(src.Weight > 0) || math.IsInf(src.Weight, 0) {
			v.add(at+".weight", "must be a finite number > 0, got %s", fmtFloat(src.Weight))
		}
		v.fieldNames(at+".fields", src.Fields)
	}
	if strings.HasPrefix(d.Val, builtinPre) {
		v.add("data.val", "builtin data sets cannot be a validation file; use data.val_ratio")
	}
	v.unitInterval("data.val_ratio", d.ValRatio)
	if d.Val != "" && d.ValRatio > 0 {
		v.add("data.val_ratio", "cannot be combined with data.val; set one of them")
	}
	v.oneOf("data.format", d.Format, Formats())
	v.fieldNames("data.fields", d.Fields)
	v.oneOf("data.prompt_template", d.PromptTemplate, PromptTemplates())
	v.atLeastOne("data.seq_len", d.SeqLen)
	v.nonNegative("data.max_len", d.MaxLen)
	if d.MaxLen > d.SeqLen && d.SeqLen >= 1 {
		v.add("data.max_len", "must be <= data.seq_len (%d), got %d; an example cannot be longer than a row", d.SeqLen, d.MaxLen)
	}
	v.oneOf("data.truncation", d.Truncation, Truncations())
	if d.Train == BuiltinData && d.BuiltinExamples < 1 {
		v.add("data.builtin_examples", "must be >= 1 when data.train is %s, got %d", BuiltinData, d.BuiltinExamples)
	} else {
		v.nonNegative("data.builtin_examples", d.BuiltinExamples)
	}

	// train
	t := c.Train
	if t.MaxSteps == 0 && t.Epochs < 1 {
		v.add("train.epochs", "must be >= 1 when train.max_steps is 0, got %d", t.Epochs)
	} else {
		v.nonNegative("train.epochs", t.Epochs)
	}
	v.nonNegative("train.max_steps", t.MaxSteps)
	v.atLeastOne("train.batch_size", t.BatchSize)
	v.atLeastOne("train.grad_accum", t.GradAccum)
	v.positiveFloat("train.lr", t.LR)
	v.oneOf("train.schedule", t.Schedule, Schedules())
	v.oneOf("train.compute_dtype", t.ComputeDType, ComputeDTypes())
	v.nonNegative("train.warmup_steps", t.WarmupSteps)
	v.unitInterval("train.warmup_ratio", t.WarmupRatio)
	if t.WarmupSteps > 0 && t.WarmupRatio > 0 {
		v.add("train.warmup_ratio", "cannot be combined with train.warmup_steps; set one of them")
	}
	if t.WeightDecay < 0 {
		v.add("train.weight_decay", "must be >= 0, got %s", fmtFloat(t.WeightDecay))
	}
	v.unitInterval("train.beta1", t.Beta1)
	v.unitInterval("train.beta2", t.Beta2)
	v.positiveFloat("train.eps", t.Eps)
	if t.MaxGradNorm < 0 {
		v.add("train.max_grad_norm", "must be >= 0 (0 = no clipping), got %s", fmtFloat(t.MaxGradNorm))
	}
	v.nonNegative("train.eval_every", t.EvalEvery)
	if t.EvalEvery > 0 && d.Val == "" && d.ValRatio == 0 {
		v.add("train.eval_every", "needs validation data: set data.val or data.val_ratio")
	}
	v.nonNegative("train.eval_batches", t.EvalBatches)
	v.nonNegative("train.log_every", t.LogEvery)
	v.nonNegative("train.threads", t.Threads)

	// checkpoint
	v.nonNegative("checkpoint.every", c.Checkpoint.Every)
	v.atLeastOne("checkpoint.keep_last", c.Checkpoint.KeepLast)

	// output
	if c.Output.Dir == "" {
		v.add("output.dir", "required: the run directory")
	}

	// resources
	if _, err := c.Resources.ReserveBytes(1 << 40); err != nil {
		v.add("resources.reserve_memory", "%v", err)
	}
	if c.Resources.Nice < 0 || c.Resources.Nice > 19 {
		v.add("resources.nice", "must be in 0..19 (as nice(1); raising priority needs root), got %d", c.Resources.Nice)
	}

	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

type validator struct {
	file string
	errs Errors
}

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{File: v.file, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) positiveInt(path string, n int) {
	if n <= 0 {
		v.add(path, "must be > 0, got %d", n)
	}
}

func (v *validator) positiveFloat(path string, x float64) {
	if !(x > 0) {
		v.add(path, "must be > 0, got %s", fmtFloat(x))
	}
}

func (v *validator) nonNegative(path string, n int) {
	if n < 0 {
		v.add(path, "must be >= 0, got %d", n)
	}
}

func (v *validator) atLeastOne(path string, n int) {
	if n < 1 {
		v.add(path, "must be >= 1, got %d", n)
	}
}

func (v *validator) unitInterval(path string, x float64) {
	if !(x >= 0 && x < 1) {
		v.add(path, "must be in [0, 1), got %s", fmtFloat(x))
	}
}

func (v *validator) oneOf(path, s string, valid []string) {
	if slices.Contains(valid, s) {
		return
	}
	msg := "must be one of " + strings.Join(valid, ", ") + "; got " + quote(s)
	if n := nearest(s, valid); s != "" && levenshtein(s, n) <= max(2, len(s)/3) {
		msg += "; did you mean " + n + "?"
	}
	v.add(path, "%s", msg)
}

// fieldNames checks the keys of a field renaming (data.fields, a source's fields).
func (v *validator) fieldNames(path string, m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		switch {
		case !slices.Contains(FieldNames(), k):
			v.add(path, "unknown field %s; did you mean %s? (fields: %s)", quote(k), nearest(k, FieldNames()), strings.Join(FieldNames(), ", "))
		case m[k] == "":
			v.add(path, "field %s: empty name", k)
		}
	}
}

func (v *validator) targetModules(mods []string) {
	const path = "lora.target_modules"
	if len(mods) == 0 {
		v.add(path, "must name at least one module (%s) or %s", strings.Join(TargetModules(), ", "), AllLinear)
		return
	}
	valid := append(TargetModules(), AllLinear)
	seen := map[string]bool{}
	for _, m := range mods {
		switch {
		case !slices.Contains(valid, m):
			v.add(path, "unknown module %s; did you mean %s?", quote(m), nearest(m, valid))
		case m == AllLinear && len(mods) > 1:
			v.add(path, "%s must be the only entry", AllLinear)
		case seen[m]:
			v.add(path, "duplicate module %s", m)
		}
		seen[m] = true
	}
}
