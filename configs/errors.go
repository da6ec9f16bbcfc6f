package configs

import (
	"fmt"
	"strconv"
	"strings"
)

// FieldError is one problem with one configuration value.
type FieldError struct {
	// File is where the value came from: the config file's path as given to Load,
	// "override KEY=VALUE" for a command-line override, "env NAME=VALUE" for an
	// environment variable; "" when unknown (Validate on a Config built in code).
	File string
	Line int    // line of the key in File; 0 when unknown or not a file
	Path string // dotted field path, e.g. "lora.r"; "" for whole-file problems
	Msg  string
}

// Error is one line: "configs/x.yaml:12: lora.r: must be > 0, got 0", without a line
// "configs/x.yaml: lora.r: ...", for an override "override lora.r=0: lora.r: ...".
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return oneLine(b.String())
}

// Errorf is a problem with field path of c found after loading (against the
// model, or the files it names), placed as Load places its own: at the line
// of the config file that set it, or at the override or environment
// variable that did.
func (c *Config) Errorf(path, format string, a ...any) *FieldError {
	e := &FieldError{File: c.Path, Path: path, Msg: fmt.Sprintf(format, a...)}
	if o, ok := c.origins[basePath(path)]; ok {
		if o.label != "" {
			e.File = o.label
		} else {
			e.Line = o.line
		}
	}
	return e
}

// Errors is every problem found; Load and Validate return it (as a value) when the
// configuration is invalid. Use errors.As(err, &errs) with errs of type Errors.
type Errors []*FieldError

// Error is one line per problem, joined with "\n".
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find a *FieldError in the list.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// oneLine keeps a message on one line whatever the file or argument held.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r\n", `\n`, "\n", `\n`, "\r", `\r`).Replace(s)
}

// levenshtein is the edit distance between a and b, in runes.
func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// nearest is the candidate closest to word (the first one on ties); "" when there
// are no candidates. A case-insensitive exact match wins.
func nearest(word string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		if strings.EqualFold(c, word) {
			return c
		}
		if d := levenshtein(word, c); bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// aliasOf maps names that torchtune, PEFT and Hugging Face Trainer users write to
// tune's path for them.
func aliasOf(key string) string {
	switch strings.ToLower(key) {
	case "rank", "lora_rank", "lora_r":
		return "lora.r"
	case "lora_alpha":
		return "lora.alpha"
	case "lora_dropout":
		return "lora.dropout"
	case "lora_attn_modules", "target_module", "modules", "lora_target", "lora_target_modules":
		return "lora.target_modules"
	case "layers_to_transform":
		return "lora.layers"
	case "num_layers":
		return "lora.last_layers"
	case "rslora":
		return "lora.use_rslora"
	case "dora":
		return "lora.use_dora"
	case "adapter", "adapter_path", "resume_adapter":
		return "lora.init_from"
	case "learning_rate":
		return "train.lr"
	case "num_epochs", "num_train_epochs":
		return "train.epochs"
	case "gradient_accumulation_steps", "gradient_accumulation", "accumulation_steps":
		return "train.grad_accum"
	case "per_device_train_batch_size", "micro_batch_size", "train_batch_size":
		return "train.batch_size"
	case "lr_scheduler", "lr_scheduler_type", "scheduler":
		return "train.schedule"
	case "num_warmup_steps", "warmup":
		return "train.warmup_steps"
	case "clip_grad_norm", "grad_clip", "gradient_clipping":
		return "train.max_grad_norm"
	case "adam_beta1":
		return "train.beta1"
	case "adam_beta2":
		return "train.beta2"
	case "adam_epsilon", "epsilon":
		return "train.eps"
	case "logging_steps", "log_every_n_steps":
		return "train.log_every"
	case "eval_steps":
		return "train.eval_every"
	case "num_threads":
		return "train.threads"
	case "max_seq_len", "max_seq_length", "max_length", "cutoff_len", "block_size":
		return "data.seq_len"
	case "packed", "pack":
		return "data.packing"
	case "dataset", "train_file", "data_path", "train_data":
		return "data.train"
	case "validation_file", "val_file", "eval_file", "val_data":
		return "data.val"
	case "val_set_size", "validation_split", "val_split":
		return "data.val_ratio"
	case "save_steps", "save_every":
		return "checkpoint.every"
	case "save_total_limit", "keep":
		return "checkpoint.keep_last"
	case "output_dir":
		return "output.dir"
	case "merge", "merge_weights", "save_merged":
		return "output.merged"
	case "model_name_or_path", "base_model", "checkpoint_dir", "model_path":
		return "model.path"
	}
	return ""
}

// suggest proposes a valid path for the unknown key named key inside section ("" for
// the top level): a known alias, the same name in another section, or the nearest
// name at that level.
func (s *schema) suggest(section, key string) string {
	if a := aliasOf(key); a != "" {
		return a
	}
	prefix := ""
	if section != "" {
		prefix = section + "."
	}
	for _, sec := range s.sections {
		if sec == section {
			continue
		}
		for _, leaf := range s.leaves[sec] {
			if strings.EqualFold(leaf, key) {
				return sec + "." + leaf
			}
		}
	}
	var names []string
	if section == "" {
		names = s.sections
	} else {
		names = s.leaves[section]
	}
	if n := nearest(key, names); n != "" {
		return prefix + n
	}
	return ""
}

// unknownKey is the message for an unknown key.
func unknownKey(suggestion string) string {
	if suggestion == "" {
		return "unknown key"
	}
	return "unknown key; did you mean " + suggestion + "?"
}
