package configs

import (
	"bytes"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Config is one run's configuration.
type Config struct {
	Model      Model      `mapstructure:"model"`
	LoRA       LoRA       `mapstructure:"lora"`
	Data       Data       `mapstructure:"data"`
	Train      Train      `mapstructure:"train"`
	Checkpoint Checkpoint `mapstructure:"checkpoint"`
	Output     Output     `mapstructure:"output"`
	Resources  Resources  `mapstructure:"resources"`

	// Path is the config file it came from, as given to Load ("" when none).
	Path string `mapstructure:"-"`

	// origins are where Load found each field's value, for Errorf.
	origins map[string]origin `mapstructure:"-"`
}

// Model names the base model.
type Model struct {
	// Path is the Hugging Face model directory (required). The special value
	// "builtin:tiny" means tune generates a small demo model.
	Path string `mapstructure:"path"`
}

// LoRA describes the adapters.
type LoRA struct {
	R       int     `mapstructure:"r"`
	Alpha   float64 `mapstructure:"alpha"`
	Dropout float64 `mapstructure:"dropout"`
	// TargetModules is a subset of q_proj, k_proj, v_proj, o_proj, gate_proj,
	// up_proj, down_proj, or the single value "all-linear".
	TargetModules []string `mapstructure:"target_modules"`
	// Layers lists the layers that get adapters; nil means all.
	Layers []int `mapstructure:"layers"`
	// LastLayers > 0 gives adapters to the last N layers only (exclusive with Layers).
	LastLayers int  `mapstructure:"last_layers"`
	UseRSLoRA  bool `mapstructure:"use_rslora"`
	// UseDoRA gives every adapted projection a learned magnitude vector
	// (DoRA, PEFT's use_dora).
	UseDoRA bool `mapstructure:"use_dora"`
	// InitFrom is a PEFT adapter directory to continue from ("" = fresh adapters).
	InitFrom string `mapstructure:"init_from"`
}

// Data describes the training and validation data.
type Data struct {
	// Train is the single training source (a file, a directory or glob of text
	// files, or "builtin:counting"); Sources is the several-source form. Exactly
	// one of them is set.
	Train   string   `mapstructure:"train"`
	Sources []Source `mapstructure:"sources"`
	// Val is the validation source (not with ValRatio); ValRatio holds out a
	// seeded fraction of the training examples instead.
	Val      string  `mapstructure:"val"`
	ValRatio float64 `mapstructure:"val_ratio"`
	// Format is one of Formats(): the record format of every source that does
	// not name its own.
	Format string `mapstructure:"format"`
	// Fields renames record fields for data.train and data.val (and for the
	// sources without fields of their own): canonical name -> the dataset's name,
	// e.g. {instruction: question, output: answer}. Keys are FieldNames().
	Fields map[string]string `mapstructure:"fields"`
	// PromptTemplate renders instruction records: "auto" (the model's chat
	// template when it has one, else Alpaca), "chat_template" or "alpaca".
	PromptTemplate string `mapstructure:"prompt_template"`
	// TrainOnInputs trains on every token, prompts included; by default only
	// responses (assistant turns with their end-of-turn token) are trained.
	TrainOnInputs bool `mapstructure:"train_on_inputs"`
	SeqLen        int  `mapstructure:"seq_len"`
	// MaxLen bounds one example in tokens (0 = SeqLen); Truncation is what
	// happens to a longer one: one of Truncations().
	MaxLen     int    `mapstructure:"max_len"`
	Truncation string `mapstructure:"truncation"`
	Packing    bool   `mapstructure:"packing"`
	Shuffle    bool   `mapstructure:"shuffle"`
	// SkipBadRecords skips (and counts) records that cannot be read instead of
	// stopping at the first.
	SkipBadRecords bool `mapstructure:"skip_bad_records"`
	// BuiltinExamples is how many examples tune generates when Train is
	// "builtin:counting".
	BuiltinExamples int `mapstructure:"builtin_examples"`
}

// Source is one entry of data.sources.
type Source struct {
	// Path is a JSONL, JSON or Parquet file, a text document, a directory (every
	// text file under it is one document) or a glob (each match by its extension).
	Path string `mapstructure:"path"`
	// Format is the records' format; "" means data.format.
	Format string `mapstructure:"format"`
	// Weight scales how often the source's examples are seen per epoch: 2 = each
	// twice, 0.5 = a seeded half (another half each epoch). Default 1.
	Weight float64 `mapstructure:"weight"`
	// Fields renames record fields as data.fields does; nil means data.fields.
	Fields map[string]string `mapstructure:"fields"`
}

// Train holds the optimizer, schedule and loop settings.
type Train struct {
	Seed        uint64  `mapstructure:"seed"`
	Epochs      int     `mapstructure:"epochs"`
	MaxSteps    int     `mapstructure:"max_steps"`
	BatchSize   int     `mapstructure:"batch_size"`
	GradAccum   int     `mapstructure:"grad_accum"`
	LR          float64 `mapstructure:"lr"`
	Schedule    string  `mapstructure:"schedule"` // constant, linear or cosine
	WarmupSteps int     `mapstructure:"warmup_steps"`
	WarmupRatio float64 `mapstructure:"warmup_ratio"`
	WeightDecay float64 `mapstructure:"weight_decay"`
	Beta1       float64 `mapstructure:"beta1"`
	Beta2       float64 `mapstructure:"beta2"`
	Eps         float64 `mapstructure:"eps"`
	MaxGradNorm float64 `mapstructure:"max_grad_norm"` // 0 = no clipping
	EvalEvery   int     `mapstructure:"eval_every"`    // 0 = no periodic evaluation
	EvalBatches int     `mapstructure:"eval_batches"`  // 0 = the whole validation set
	LogEvery    int     `mapstructure:"log_every"`
	Threads     int     `mapstructure:"threads"` // 0 = all cores
	// ActivationCheckpointing keeps only each layer's input and runs the
	// layer's forward again in the backward pass: less memory, about a third
	// more compute (frozen weights need no weight gradient, so the forward
	// is half of a step's products).
	ActivationCheckpointing bool `mapstructure:"activation_checkpointing"`
	// ComputeDType is the precision of the frozen-weight products: auto, bf16
	// or f32. LoRA A/B, AdamW, norms, softmax and the loss are always f32.
	ComputeDType string `mapstructure:"compute_dtype"`
}

// Checkpoint controls step checkpoints.
type Checkpoint struct {
	Every    int `mapstructure:"every"` // 0 = only the final adapter
	KeepLast int `mapstructure:"keep_last"`
}

// Output says where the run writes and what.
type Output struct {
	Dir    string `mapstructure:"dir"`
	Merged bool   `mapstructure:"merged"`
}

// Resources says what a run leaves to the rest of the machine.
type Resources struct {
	// ReserveMemory is the memory kept free for everything else: a size
	// ("2GB", "512MiB") or a share of the RAM ("10%"); "auto" is the larger
	// of 2 GB and 10%. tune run refuses a run that would eat into it, and
	// stops cleanly (after a checkpoint) when other programs do.
	ReserveMemory string `mapstructure:"reserve_memory"`
	// Nice lowers the run's CPU priority (0 to 19, as nice(1)).
	Nice int `mapstructure:"nice"`
}

// AutoReserve is resources.reserve_memory's default.
const AutoReserve = "auto"

// ReserveBytes is resources.reserve_memory in bytes on a machine with
// total bytes of RAM.
func (r Resources) ReserveBytes(total int64) (int64, error) {
	s := strings.TrimSpace(r.ReserveMemory)
	if s == "" || s == AutoReserve {
		return max(2_000_000_000, total/10), nil
	}
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil || f < 0 || f >= 100 {
			return 0, fmt.Errorf("%q: a share must be a number in [0, 100) followed by %%", s)
		}
		return int64(f / 100 * float64(total)), nil
	}
	return ParseBytes(s)
}

// ParseBytes reads a size: a number and a unit, B, KB, MB, GB, TB (powers
// of 1000) or KiB, MiB, GiB, TiB (powers of 1024); a bare number is bytes.
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	f, err := strconv.ParseFloat(num, 64)
	mult, ok := map[string]float64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[strings.ToUpper(unit)]
	if err != nil || !ok || f < 0 || f*mult > 1<<62 {
		return 0, fmt.Errorf("%q: want a size such as 2GB, 512MiB or 10%%", s)
	}
	return int64(f * mult), nil
}

// Field types, as Field.Type spells them.
const (
	TypeInt     = "int"
	TypeUint    = "uint"
	TypeFloat   = "float"
	TypeBool    = "bool"
	TypeString  = "string"
	TypeStrings = "[]string"
	TypeInts    = "[]int"
	// TypeStringMap is a mapping of names to names ({a: b}), also written as a
	// list or a comma-separated string of a=b.
	TypeStringMap = "map[string]string"
	// TypeSources is a list of data sources (mappings with path, format, weight,
	// fields).
	TypeSources = "[]source"
)

// Field describes one configuration key.
type Field struct {
	Path    string // dotted path, e.g. "lora.r"
	Type    string // one of the Type constants
	Default any    // int, uint64, float64, bool, string, []string, []int, map[string]string or []Source
	Help    string // one line
}

// The builtin sources tune generates itself.
const (
	BuiltinModel = "builtin:tiny" // the demo's; builtin.Names lists them all
	BuiltinData  = "builtin:counting"
	builtinPre   = "builtin:"
)

// BuiltinModels are the NAMEs of `model.path: builtin:NAME`, the models tune
// generates itself (model/builtin makes each).
func BuiltinModels() []string {
	return []string{"tiny", "smollm2-135m", "qwen2.5-0.5b", "llama3.2-1b", "qwen2.5-7b"}
}

// ComputeDTypes are the values train.compute_dtype takes.
func ComputeDTypes() []string { return []string{"auto", "bf16", "f32"} }

// TargetModules returns the projection names lora.target_modules accepts, besides
// AllLinear.
func TargetModules() []string {
	return []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
}

// AllLinear is the lora.target_modules value meaning every projection.
const AllLinear = "all-linear"

// Schedules returns the accepted train.schedule values.
func Schedules() []string { return []string{"constant", "linear", "cosine"} }

// Formats returns the accepted data.format values.
func Formats() []string { return []string{"pretokenized", "text", "instruction", "chat"} }

// Truncations returns the accepted data.truncation values: keep the first
// max_len tokens (right), the last ones (left), drop the example, or split it
// into windows of max_len tokens, each its own example.
func Truncations() []string { return []string{"right", "left", "drop", "split"} }

// PromptTemplates returns the accepted data.prompt_template values.
func PromptTemplates() []string { return []string{"auto", "chat_template", "alpaca"} }

// FieldNames returns the canonical record field names data.fields may rename:
// instruction records (instruction, input, output, system), chat records
// (messages, role, content), text records (text) and pre-tokenized records
// (input_ids, labels).
func FieldNames() []string {
	return []string{"instruction", "input", "output", "system", "messages", "role", "content", "text", "input_ids", "labels"}
}

// SourceKeys returns the keys an entry of data.sources may have.
func SourceKeys() []string { return []string{"path", "format", "weight", "fields"} }

// Fields returns every configuration key in schema order, with its type, default and
// help. The result is a fresh copy.
func Fields() []Field {
	return []Field{
		{"model.path", TypeString, "", "Hugging Face model directory (config.json, *.safetensors, tokenizer files), a GGUF file (llama, qwen2, qwen3), or builtin:tiny; required"},

		{"lora.r", TypeInt, 8, "adapter rank"},
		{"lora.alpha", TypeFloat, 16.0, "adapter scale numerator: updates are scaled by alpha/r (alpha/sqrt(r) with use_rslora)"},
		{"lora.dropout", TypeFloat, 0.05, "dropout on the adapter input, in [0, 1)"},
		{"lora.target_modules", TypeStrings, []string{"q_proj", "v_proj"}, "projections with adapters: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj, or all-linear"},
		{"lora.layers", TypeInts, []int{}, "layer indices with adapters; empty = all"},
		{"lora.last_layers", TypeInt, 0, "if > 0, only the last N layers get adapters (not with lora.layers)"},
		{"lora.use_rslora", TypeBool, false, "rank-stabilized LoRA: scale by alpha/sqrt(r)"},
		{"lora.use_dora", TypeBool, false, "DoRA: a learned magnitude per output row on top of LoRA's direction (PEFT's use_dora)"},
		{"lora.init_from", TypeString, "", "PEFT adapter directory to continue training from"},

		{"data.train", TypeString, "", "training data: a JSONL/JSON/Parquet file, a directory or glob of text files, or builtin:counting; this or data.sources is required"},
		{"data.sources", TypeSources, []Source{}, "several training sources mixed: a list of {path, format, weight, fields} (not with data.train)"},
		{"data.val", TypeString, "", "validation data, as data.train (not with data.val_ratio)"},
		{"data.val_ratio", TypeFloat, 0.0, "fraction of the training examples held out (seeded) for validation, in [0, 1)"},
		{"data.format", TypeString, "pretokenized", "record format: pretokenized, text, instruction or chat"},
		{"data.fields", TypeStringMap, map[string]string{}, "record field names when they differ, e.g. {instruction: question, output: answer, messages: conversations}"},
		{"data.prompt_template", TypeString, "auto", "instruction prompts: auto (the model's chat template if it has one, else Alpaca), chat_template or alpaca"},
		{"data.train_on_inputs", TypeBool, false, "train on prompts too; by default only responses (assistant turns + end-of-turn token) are trained"},
		{"data.seq_len", TypeInt, 512, "tokens per row"},
		{"data.max_len", TypeInt, 0, "tokens per example at most; 0 = data.seq_len"},
		{"data.truncation", TypeString, "right", "longer examples: right (keep the start), left (keep the end), drop, or split (into windows)"},
		{"data.packing", TypeBool, true, "pack several examples into each row (attention never crosses examples)"},
		{"data.shuffle", TypeBool, true, "shuffle the examples every epoch"},
		{"data.skip_bad_records", TypeBool, false, "skip and count records that cannot be read instead of stopping at the first"},
		{"data.builtin_examples", TypeInt, 256, "examples generated when data.train is builtin:counting"},

		{"train.seed", TypeUint, uint64(42), "seed of every random choice (init, dropout, shuffle, split)"},
		{"train.epochs", TypeInt, 1, "passes over the data; used when train.max_steps is 0"},
		{"train.max_steps", TypeInt, 0, "optimizer steps; > 0 overrides train.epochs"},
		{"train.batch_size", TypeInt, 4, "rows per micro-batch"},
		{"train.grad_accum", TypeInt, 1, "micro-batches per optimizer step"},
		{"train.lr", TypeFloat, 2e-4, "peak learning rate (AdamW)"},
		{"train.schedule", TypeString, "cosine", "learning-rate decay after warmup: constant, linear or cosine"},
		{"train.warmup_steps", TypeInt, 0, "linear warmup steps"},
		{"train.warmup_ratio", TypeFloat, 0.0, "warmup as a fraction of all steps, in [0, 1) (not with warmup_steps)"},
		{"train.weight_decay", TypeFloat, 0.0, "AdamW decoupled weight decay"},
		{"train.beta1", TypeFloat, 0.9, "AdamW beta1, in [0, 1)"},
		{"train.beta2", TypeFloat, 0.999, "AdamW beta2, in [0, 1)"},
		{"train.eps", TypeFloat, 1e-8, "AdamW epsilon"},
		{"train.max_grad_norm", TypeFloat, 1.0, "clip the global gradient norm to this; 0 = no clipping"},
		{"train.eval_every", TypeInt, 0, "evaluate every N steps; 0 = no periodic evaluation"},
		{"train.eval_batches", TypeInt, 0, "batches per evaluation; 0 = the whole validation set"},
		{"train.log_every", TypeInt, 1, "print a progress line every N steps when the output is not a terminal (a terminal shows a bar; metrics.jsonl gets every step)"},
		{"train.threads", TypeInt, 0, "CPU threads; 0 = all cores"},
		{"train.activation_checkpointing", TypeBool, false, "keep only each layer's input and recompute the rest in the backward pass: less memory, about a third more compute"},
		{"train.compute_dtype", TypeString, "auto", "precision of the frozen-weight products: auto (bf16 where the weights are bf16 and the CPU has bf16 dot products), bf16 or f32"},

		{"checkpoint.every", TypeInt, 100, "resumable checkpoint every N steps; 0 = only the final adapter"},
		{"checkpoint.keep_last", TypeInt, 3, "step checkpoints kept (older ones are deleted)"},

		{"output.dir", TypeString, "", "run directory; empty = runs/<config file base name>"},
		{"output.merged", TypeBool, false, "also write the merged model"},

		{"resources.reserve_memory", TypeString, AutoReserve, "memory kept free for the rest of the machine: a size (2GB, 512MiB), a share of the RAM (10%) or auto (the larger of 2 GB and 10%); a run that would use it is refused, and one that finds it taken by other programs checkpoints and stops"},
		{"resources.nice", TypeInt, 0, "lower the run's CPU priority, 0 to 19 as nice(1), e.g. 10 for an overnight run beside a desktop"},
	}
}

// DefaultOutputDir is output.dir when the config leaves it empty:
// runs/<base name of the config file without extension> ("runs/run" without a file).
func DefaultOutputDir(configPath string) string {
	name := strings.TrimSuffix(filepath.Base(configPath), filepath.Ext(configPath))
	if configPath == "" || name == "" || name == "." || name == ".." || name == string(filepath.Separator) {
		name = "run"
	}
	return filepath.Join("runs", name)
}

// Dump returns the effective configuration as YAML, every key in schema order; Load
// reads it back to the same Config (Path aside).
func Dump(c *Config) ([]byte, error) {
	if c == nil {
		return nil, fmt.Errorf("configs: Dump of a nil config")
	}
	root := &yaml.Node{Kind: yaml.MappingNode}
	if c.Path != "" {
		root.HeadComment = "effective configuration of " + c.Path
	}
	var sec *yaml.Node
	current := ""
	for _, f := range Fields() {
		section, leaf, _ := strings.Cut(f.Path, ".")
		if section != current {
			current = section
			sec = &yaml.Node{Kind: yaml.MappingNode}
			root.Content = append(root.Content, scalarKey(section), sec)
		}
		v, ok := fieldValue(c, f.Path)
		if !ok {
			return nil, fmt.Errorf("configs: Dump: no struct field for %s", f.Path)
		}
		n, err := valueNode(v.Interface())
		if err != nil {
			return nil, fmt.Errorf("configs: Dump %s: %w", f.Path, err)
		}
		sec.Content = append(sec.Content, scalarKey(leaf), n)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("configs: Dump: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("configs: Dump: %w", err)
	}
	return buf.Bytes(), nil
}

// valueNode is the YAML node of one field value.
func valueNode(val any) (*yaml.Node, error) {
	scalar := func(tag, v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v} }
	switch x := val.(type) {
	case int:
		return scalar("!!int", strconv.Itoa(x)), nil
	case uint64:
		return scalar("!!int", strconv.FormatUint(x, 10)), nil
	case float64:
		return scalar("!!float", fmtFloat(x)), nil
	case bool:
		return scalar("!!bool", strconv.FormatBool(x)), nil
	case string:
		return scalar("!!str", x), nil // the encoder quotes it when needed
	case []string:
		seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
		for _, e := range x {
			seq.Content = append(seq.Content, scalar("!!str", e))
		}
		return seq, nil
	case []int:
		seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
		for _, e := range x {
			seq.Content = append(seq.Content, scalar("!!int", strconv.Itoa(e)))
		}
		return seq, nil
	case map[string]string:
		m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Style: yaml.FlowStyle}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			m.Content = append(m.Content, scalar("!!str", k), scalar("!!str", x[k]))
		}
		return m, nil
	case []Source:
		seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		if len(x) == 0 {
			seq.Style = yaml.FlowStyle
		}
		for _, src := range x {
			fields, _ := valueNode(src.Fields)
			if src.Fields == nil {
				fields, _ = valueNode(map[string]string{})
			}
			m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			m.Content = append(m.Content,
				scalarKey("path"), scalar("!!str", src.Path),
				scalarKey("format"), scalar("!!str", src.Format),
				scalarKey("weight"), scalar("!!float", fmtFloat(src.Weight)),
				scalarKey("fields"), fields)
			seq.Content = append(seq.Content, m)
		}
		return seq, nil
	}
	return nil, fmt.Errorf("unsupported type %T", val)
}

func scalarKey(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

// fieldValue finds the struct field of c at a dotted path by its mapstructure tags.
func fieldValue(c *Config, path string) (reflect.Value, bool) {
	v := reflect.ValueOf(c).Elem()
	for _, name := range strings.Split(path, ".") {
		found := false
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			if tagName(t.Field(i)) == name {
				v = v.Field(i)
				found = true
				break
			}
		}
		if !found {
			return reflect.Value{}, false
		}
	}
	return v, true
}

func tagName(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
	return tag
}

// setNested sets m[a][b] = v for path "a.b".
func setNested(m map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		sub, ok := m[p].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[p] = sub
		}
		m = sub
	}
	m[parts[len(parts)-1]] = v
}
