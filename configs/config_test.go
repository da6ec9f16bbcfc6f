package configs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// base is a minimal valid config; the lines a case adds start at line 5.
const base = "model:\n  path: m\ndata:\n  train: t.jsonl\n"

func doc(lines ...string) []byte {
	return []byte(base + strings.Join(lines, "\n") + "\n")
}

func messages(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error is %T, not Errors: %v", err, err)
	}
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Error()
		if strings.ContainsAny(out[i], "\r\n") {
			t.Errorf("error spans lines: %q", out[i])
		}
	}
	return out
}

func TestValidationMessages(t *testing.T) {
	const f = "configs/x.yaml"
	cases := []struct {
		name      string
		yaml      []byte
		overrides []string
		env       []string
		want      []string
	}{
		{"valid", doc(), nil, nil, nil},
		{"model.path missing", []byte("data:\n  train: t.jsonl\n"), nil, nil,
			[]string{f + ": model.path: required: the Hugging Face model directory"}},
		{"model.path empty in file", []byte("model:\n  path: \"\"\ndata:\n  train: t.jsonl\n"), nil, nil,
			[]string{f + ":2: model.path: required: the Hugging Face model directory"}},
		{"model.path unknown builtin", []byte("model:\n  path: builtin:huge\ndata:\n  train: t.jsonl\n"), nil, nil,
			[]string{f + `:2: model.path: unknown builtin model "builtin:huge"; tune has builtin:tiny, builtin:smollm2-135m, builtin:qwen2.5-0.5b, builtin:llama3.2-1b, builtin:qwen2.5-7b`}},
		{"data.train missing", []byte("model:\n  path: m\n"), nil, nil,
			[]string{f + ": data.train: required: the training data file, or builtin:counting; or data.sources"}},
		{"r zero", doc("lora:", "  r: 0"), nil, nil, []string{f + ":6: lora.r: must be > 0, got 0"}},
		{"r negative", doc("lora:", "  r: -4"), nil, nil, []string{f + ":6: lora.r: must be > 0, got -4"}},
		{"r wrong type", doc("lora:", "  r: eight"), nil, nil, []string{f + `:6: lora.r: expected an integer, got "eight"`}},
		{"r quoted number", doc("lora:", `  r: "8"`), nil, nil, []string{f + `:6: lora.r: expected an integer, got "8"`}},
		{"r fraction", doc("lora:", "  r: 1.5"), nil, nil, []string{f + `:6: lora.r: expected an integer, got 1.5`}},
		{"r list", doc("lora:", "  r: [8]"), nil, nil, []string{f + `:6: lora.r: expected an integer, got a list`}},
		{"unknown key", doc("lora:", "  rank: 8"), nil, nil, []string{f + ":6: lora.rank: unknown key; did you mean lora.r?"}},
		{"unknown key typo", doc("lora:", "  alhpa: 8"), nil, nil, []string{f + ":6: lora.alhpa: unknown key; did you mean lora.alpha?"}},
		{"unknown section", doc("loar:", "  r: 8"), nil, nil, []string{f + ":5: loar: unknown key; did you mean lora?"}},
		{"key in the wrong section", doc("lr: 0.1"), nil, nil, []string{f + ":5: lr: unknown key; did you mean train.lr?"}},
		{"HF name", doc("train:", "  learning_rate: 0.1"), nil, nil, []string{f + ":6: train.learning_rate: unknown key; did you mean train.lr?"}},
		{"section not a mapping", doc("lora: 8"), nil, nil, []string{f + ":5: lora: expected a mapping of lora keys, got 8"}},
		{"duplicate key", doc("lora:", "  r: 4", "  r: 8"), nil, nil, []string{f + ":7: lora.r: duplicate key (first at line 6)"}},
		{"alpha zero", doc("lora:", "  alpha: 0"), nil, nil, []string{f + ":6: lora.alpha: must be > 0, got 0"}},
		{"alpha wrong type", doc("lora:", "  alpha: big"), nil, nil, []string{f + `:6: lora.alpha: expected a number, got "big"`}},
		{"dropout one", doc("lora:", "  dropout: 1"), nil, nil, []string{f + ":6: lora.dropout: must be in [0, 1), got 1"}},
		{"dropout negative", doc("lora:", "  dropout: -0.1"), nil, nil, []string{f + ":6: lora.dropout: must be in [0, 1), got -0.1"}},
		{"unknown module", doc("lora:", "  target_modules: [q_proj, qproj]"), nil, nil,
			[]string{f + `:6: lora.target_modules: unknown module "qproj"; did you mean q_proj?`}},
		{"unknown module in a string", doc("lora:", "  target_modules: gate"), nil, nil,
			[]string{f + `:6: lora.target_modules: unknown module "gate"; did you mean gate_proj?`}},
		{"no module", doc("lora:", "  target_modules: []"), nil, nil,
			[]string{f + ":6: lora.target_modules: must name at least one module (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj) or all-linear"}},
		{"all-linear with others", doc("lora:", "  target_modules: [all-linear, q_proj]"), nil, nil,
			[]string{f + ":6: lora.target_modules: all-linear must be the only entry"}},
		{"module type", doc("lora:", "  target_modules: [q_proj, 3]"), nil, nil,
			[]string{f + ":6: lora.target_modules: expected a name or a list of names, got 3 in the list"}},
		{"layers negative", doc("lora:", "  layers: [0, -1]"), nil, nil, []string{f + ":6: lora.layers: must be >= 0, got -1"}},
		{"layers wrong type", doc("lora:", "  layers: [0, x]"), nil, nil,
			[]string{f + `:6: lora.layers: expected an integer or a list of integers, got "x" in the list`}},
		{"layers and last_layers", doc("lora:", "  layers: [0, 1]", "  last_layers: 2"), nil, nil,
			[]string{f + ":7: lora.last_layers: cannot be combined with lora.layers; set one of them"}},
		{"use_rslora not a bool", doc("lora:", "  use_rslora: yes"), nil, nil,
			[]string{f + `:6: lora.use_rslora: expected true or false, got "yes"`}},
		{"lr zero", doc("train:", "  lr: 0"), nil, nil, []string{f + ":6: train.lr: must be > 0, got 0"}},
		{"lr negative", doc("train:", "  lr: -1e-4"), nil, nil, []string{f + ":6: train.lr: must be > 0, got -0.0001"}},
		{"lr nan", doc("train:", "  lr: .nan"), nil, nil, []string{f + ":6: train.lr: expected a finite number, got NaN"}},
		{"schedule", doc("train:", "  schedule: cosin"), nil, nil,
			[]string{f + `:6: train.schedule: must be one of constant, linear, cosine; got "cosin"; did you mean cosine?`}},
		{"schedule far", doc("train:", "  schedule: step"), nil, nil,
			[]string{f + `:6: train.schedule: must be one of constant, linear, cosine; got "step"`}},
		{"warmup_ratio", doc("train:", "  warmup_ratio: 1"), nil, nil, []string{f + ":6: train.warmup_ratio: must be in [0, 1), got 1"}},
		{"warmup both", doc("train:", "  warmup_steps: 10", "  warmup_ratio: 0.1"), nil, nil,
			[]string{f + ":7: train.warmup_ratio: cannot be combined with train.warmup_steps; set one of them"}},
		{"beta1", doc("train:", "  beta1: 1"), nil, nil, []string{f + ":6: train.beta1: must be in [0, 1), got 1"}},
		{"beta2", doc("train:", "  beta2: -0.5"), nil, nil, []string{f + ":6: train.beta2: must be in [0, 1), got -0.5"}},
		{"eps", doc("train:", "  eps: 0"), nil, nil, []string{f + ":6: train.eps: must be > 0, got 0"}},
		{"batch_size", doc("train:", "  batch_size: 0"), nil, nil, []string{f + ":6: train.batch_size: must be >= 1, got 0"}},
		{"grad_accum", doc("train:", "  grad_accum: 0"), nil, nil, []string{f + ":6: train.grad_accum: must be >= 1, got 0"}},
		{"duplicate section", doc("data:", "  seq_len: 0"), nil, nil, []string{f + ":5: data: duplicate key (first at line 3)"}},
		{"seq_len zero", []byte("model:\n  path: m\ndata:\n  train: t.jsonl\n  seq_len: 0\n"), nil, nil,
			[]string{f + ":5: data.seq_len: must be >= 1, got 0"}},
		{"epochs zero", doc("train:", "  epochs: 0"), nil, nil,
			[]string{f + ":6: train.epochs: must be >= 1 when train.max_steps is 0, got 0"}},
		{"epochs zero with max_steps", doc("train:", "  epochs: 0", "  max_steps: 10"), nil, nil, nil},
		{"val_ratio", nil, []string{"model.path=m", "data.train=t", "data.val_ratio=1"}, nil,
			[]string{"override data.val_ratio=1: data.val_ratio: must be in [0, 1), got 1"}},
		{"format", []byte("model:\n  path: m\ndata:\n  train: t.jsonl\n  format: jsonl\n"), nil, nil,
			[]string{f + `:5: data.format: must be one of pretokenized, text, instruction, chat; got "jsonl"`}},
		{"keep_last", doc("checkpoint:", "  keep_last: 0"), nil, nil, []string{f + ":6: checkpoint.keep_last: must be >= 1, got 0"}},
		{"checkpoint.every", doc("checkpoint:", "  every: -1"), nil, nil, []string{f + ":6: checkpoint.every: must be >= 0, got -1"}},
		{"seed negative", doc("train:", "  seed: -1"), nil, nil, []string{f + ":6: train.seed: expected a non-negative integer, got -1"}},
		{"eval without data", doc("train:", "  eval_every: 10"), nil, nil,
			[]string{f + ":6: train.eval_every: needs validation data: set data.val or data.val_ratio"}},
		{"builtin examples", []byte("model:\n  path: builtin:tiny\ndata:\n  train: builtin:counting\n  builtin_examples: 0\n"), nil, nil,
			[]string{f + ":5: data.builtin_examples: must be >= 1 when data.train is builtin:counting, got 0"}},

		{"override value", doc(), []string{"lora.r=0"}, nil, []string{"override lora.r=0: lora.r: must be > 0, got 0"}},
		{"override type", doc(), []string{"lora.r=eight"}, nil, []string{`override lora.r=eight: lora.r: expected an integer, got "eight"`}},
		{"override unknown", doc(), []string{"lora.rank=4"}, nil, []string{"override lora.rank=4: lora.rank: unknown key; did you mean lora.r?"}},
		{"override unknown section", doc(), []string{"loar.r=4"}, nil, []string{"override loar.r=4: loar.r: unknown key; did you mean lora.r?"}},
		{"override alias", doc(), []string{"learning_rate=1e-4"}, nil, []string{"override learning_rate=1e-4: learning_rate: unknown key; did you mean train.lr?"}},
		{"override section", doc(), []string{"lora=1"}, nil, []string{"override lora=1: lora: is a section, not a value; set one of its keys, e.g. lora.r=..."}},
		{"override malformed", doc(), []string{"lora.r"}, nil, []string{"override lora.r: malformed override: expected key.path=value, e.g. lora.r=16"}},
		{"override empty number", doc(), []string{"lora.r="}, nil, []string{"override lora.r=: lora.r: expected an integer, got nothing"}},
		{"override bad yaml", doc(), []string{"lora.target_modules=[q_proj"}, nil,
			[]string{"override lora.target_modules=[q_proj: lora.target_modules: invalid YAML value: did not find expected ',' or ']'"}},
		{"override beats a bad file value", doc("lora:", "  r: 0"), []string{"lora.r=4"}, nil, nil},
		{"env value", doc(), nil, []string{"TUNE_TRAIN_LR=0", "TUNE_UNRELATED=1"}, []string{"env TUNE_TRAIN_LR=0: train.lr: must be > 0, got 0"}},
		{"env type", doc(), nil, []string{"TUNE_LORA_R=x"}, []string{`env TUNE_LORA_R=x: lora.r: expected an integer, got "x"`}},

		// yaml.v3 names the line where the enclosing block starts.
		{"yaml syntax", []byte("model:\n  path: m\n data: x\n"), nil, nil,
			[]string{f + ":2: invalid YAML: did not find expected key"}},
		{"yaml unclosed quote", []byte("model:\n  path: m\ndata:\n  train: \"t.jsonl\n"), nil, nil,
			[]string{f + ":4: invalid YAML: found unexpected end of stream"}},
		{"yaml tab", []byte("model:\n\tpath: m\n"), nil, nil,
			[]string{f + ":2: invalid YAML: found character that cannot start any token"}},
		{"not a mapping", []byte("- a\n- b\n"), nil, nil,
			[]string{f + ":1: expected a mapping of sections (model, lora, data, train, checkpoint, output, resources), got a list"}},
		{"two documents", []byte(string(doc()) + "---\nlora:\n  r: 4\n"), nil, nil,
			[]string{f + ":6: invalid config: more than one YAML document"}},
		{"merge key", []byte("x: &b {r: 4}\n" + string(doc("lora:", "  <<: *b"))), nil, nil,
			[]string{f + ":1: x: unknown key; did you mean lora?", f + ":7: lora.<<: merge keys (<<) are not supported; write the keys out"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := load(f, c.yaml, c.overrides, c.env)
			got := messages(t, err)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(c.want, "\n  "))
			}
		})
	}
}

func TestAllErrorsReported(t *testing.T) {
	yaml := "model:\n" + // 1
		"  path: m\n" + // 2
		"lora:\n" + // 3
		"  r: 0\n" + // 4
		"  alpha: -1\n" + // 5
		"  rank: 8\n" + // 6
		"  target_modules: q_proj,x_proj\n" + // 7
		"train:\n" + // 8
		"  schedule: cosinus\n" + // 9
		"  lr: fast\n" + // 10
		"  batch_size: 0\n" // 11
	_, err := load("x.yaml", []byte(yaml), []string{"checkpoint.keep_last=0", "nope"}, nil)
	want := []string{
		"x.yaml:6: lora.rank: unknown key; did you mean lora.r?",
		`x.yaml:10: train.lr: expected a number, got "fast"`,
		"override nope: malformed override: expected key.path=value, e.g. lora.r=16",
		"x.yaml:4: lora.r: must be > 0, got 0",
		"x.yaml:5: lora.alpha: must be > 0, got -1",
		`x.yaml:7: lora.target_modules: unknown module "x_proj"; did you mean q_proj?`,
		"x.yaml: data.train: required: the training data file, or builtin:counting; or data.sources",
		"x.yaml:11: train.batch_size: must be >= 1, got 0",
		`x.yaml:9: train.schedule: must be one of constant, linear, cosine; got "cosinus"; did you mean cosine?`,
		"override checkpoint.keep_last=0: checkpoint.keep_last: must be >= 1, got 0",
	}
	got := messages(t, err)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if err.Error() != strings.Join(want, "\n") {
		t.Errorf("Error() = %q", err.Error())
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "lora.rank" || fe.Line != 6 {
		t.Errorf("errors.As *FieldError = %+v", fe)
	}
}

func TestDefaultsApplied(t *testing.T) {
	cfg, err := load("configs/mine.yaml", doc(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	want := Config{
		Model: Model{Path: filepath.Join(wd, "m")},
		LoRA:  LoRA{R: 8, Alpha: 16, Dropout: 0.05, TargetModules: []string{"q_proj", "v_proj"}},
		Data: Data{Train: filepath.Join(wd, "t.jsonl"), Format: "pretokenized", SeqLen: 512, Packing: true, Shuffle: true,
			BuiltinExamples: 256, PromptTemplate: "auto", Truncation: "right"},
		Train: Train{Seed: 42, Epochs: 1, BatchSize: 4, GradAccum: 1, LR: 2e-4, Schedule: "cosine",
			Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1.0, LogEvery: 1, ComputeDType: "auto"},
		Checkpoint: Checkpoint{Every: 100, KeepLast: 3},
		Output:     Output{Dir: filepath.Join(wd, "runs", "mine")},
		Resources:  Resources{ReserveMemory: "auto"},
		Path:       "configs/mine.yaml",
	}
	cfg.origins = nil // where values came from: TestErrorfPlacesTheField
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("got  %+v\nwant %+v", *cfg, want)
	}

	// An empty file and a null value both mean the defaults.
	cfg2, err := load("c.yaml", []byte("model:\n  path: m\ndata:\n  train: t.jsonl\nlora:\n  r: ~\ntrain:\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg2.LoRA.R != 8 || cfg2.Train.LR != 2e-4 {
		t.Errorf("null values did not give defaults: %+v", cfg2.LoRA)
	}
	if _, err := load("", nil, []string{"model.path=m", "data.train=t"}, nil); err != nil {
		t.Errorf("no file, overrides only: %v", err)
	}
}

func TestDefaultsMap(t *testing.T) {
	d := defaults()
	lora := d["lora"].(map[string]any)
	if lora["r"] != 8 || lora["alpha"] != 16.0 || !reflect.DeepEqual(lora["target_modules"], []string{"q_proj", "v_proj"}) {
		t.Errorf("lora defaults %v", lora)
	}
	tr := d["train"].(map[string]any)
	if tr["lr"] != 2e-4 || tr["schedule"] != "cosine" || tr["seed"] != uint64(42) {
		t.Errorf("train defaults %v", tr)
	}
	// A fresh copy each time.
	lora["r"] = 99
	if defaults()["lora"].(map[string]any)["r"] != 8 {
		t.Error("defaults shares state")
	}
	if len(d) != 7 {
		t.Errorf("%d sections", len(d))
	}
}

func TestFieldsMatchStruct(t *testing.T) {
	var paths []string
	ct := reflect.TypeOf(Config{})
	for i := 0; i < ct.NumField(); i++ {
		sec := ct.Field(i)
		name := tagName(sec)
		if name == "-" {
			continue
		}
		for j := 0; j < sec.Type.NumField(); j++ {
			paths = append(paths, name+"."+tagName(sec.Type.Field(j)))
		}
	}
	var fields []string
	for _, f := range Fields() {
		fields = append(fields, f.Path)
		v, ok := fieldValue(&Config{}, f.Path)
		if !ok {
			t.Fatalf("no struct field for %s", f.Path)
		}
		var wantKind reflect.Kind
		switch f.Type {
		case TypeInt:
			wantKind = reflect.Int
		case TypeUint:
			wantKind = reflect.Uint64
		case TypeFloat:
			wantKind = reflect.Float64
		case TypeBool:
			wantKind = reflect.Bool
		case TypeString:
			wantKind = reflect.String
		case TypeStrings, TypeInts, TypeSources:
			wantKind = reflect.Slice
		case TypeStringMap:
			wantKind = reflect.Map
		}
		if v.Kind() != wantKind {
			t.Errorf("%s: field kind %v, schema type %s", f.Path, v.Kind(), f.Type)
		}
		if f.Help == "" || strings.Contains(f.Help, "\n") {
			t.Errorf("%s: help %q", f.Path, f.Help)
		}
	}
	if !reflect.DeepEqual(paths, fields) {
		t.Errorf("struct paths %v\nschema paths %v", paths, fields)
	}
}

func TestOverrides(t *testing.T) {
	wd, _ := os.Getwd()
	cases := []struct {
		overrides []string
		env       []string
		check     func(c *Config) bool
	}{
		{[]string{"lora.r=4"}, nil, func(c *Config) bool { return c.LoRA.R == 4 }},
		{[]string{"lora.r=1e1"}, nil, func(c *Config) bool { return c.LoRA.R == 10 }},
		{[]string{"train.lr=1e-4"}, nil, func(c *Config) bool { return c.Train.LR == 1e-4 }},
		{[]string{"lora.alpha=32"}, nil, func(c *Config) bool { return c.LoRA.Alpha == 32 }},
		{[]string{"lora.use_rslora=true"}, nil, func(c *Config) bool { return c.LoRA.UseRSLoRA }},
		{[]string{"data.packing=false"}, nil, func(c *Config) bool { return !c.Data.Packing }},
		{[]string{"train.seed=7"}, nil, func(c *Config) bool { return c.Train.Seed == 7 }},
		{[]string{"data.format=chat"}, nil, func(c *Config) bool { return c.Data.Format == "chat" }},
		{[]string{"output.dir=runs/2024"}, nil, func(c *Config) bool { return c.Output.Dir == filepath.Join(wd, "runs/2024") }},
		{[]string{`output.dir="/a b #c"`}, nil, func(c *Config) bool { return c.Output.Dir == "/a b #c" }},
		{[]string{"data.val=/v.jsonl", "data.val="}, nil, func(c *Config) bool { return c.Data.Val == "" }},
		{[]string{"lora.target_modules=[q_proj,k_proj]"}, nil, func(c *Config) bool {
			return reflect.DeepEqual(c.LoRA.TargetModules, []string{"q_proj", "k_proj"})
		}},
		{[]string{"lora.target_modules=q_proj, o_proj"}, nil, func(c *Config) bool {
			return reflect.DeepEqual(c.LoRA.TargetModules, []string{"q_proj", "o_proj"})
		}},
		{[]string{"lora.target_modules=all-linear"}, nil, func(c *Config) bool {
			return reflect.DeepEqual(c.LoRA.TargetModules, []string{"all-linear"})
		}},
		{[]string{"lora.layers=[0,2]"}, nil, func(c *Config) bool { return reflect.DeepEqual(c.LoRA.Layers, []int{0, 2}) }},
		{[]string{"lora.layers=3"}, nil, func(c *Config) bool { return reflect.DeepEqual(c.LoRA.Layers, []int{3}) }},
		{[]string{"lora.layers=1,5"}, nil, func(c *Config) bool { return reflect.DeepEqual(c.LoRA.Layers, []int{1, 5}) }},
		{[]string{"lora.layers=[1]", "lora.layers=[]"}, nil, func(c *Config) bool { return c.LoRA.Layers == nil }},
		{[]string{"lora.r=4", "lora.r=16"}, nil, func(c *Config) bool { return c.LoRA.R == 16 }},
		// file < env < override
		{nil, []string{"TUNE_LORA_R=12"}, func(c *Config) bool { return c.LoRA.R == 12 }},
		{[]string{"lora.r=2"}, []string{"TUNE_LORA_R=12"}, func(c *Config) bool { return c.LoRA.R == 2 }},
		{nil, []string{"TUNE_LORA_TARGET_MODULES=[k_proj, v_proj]"}, func(c *Config) bool {
			return reflect.DeepEqual(c.LoRA.TargetModules, []string{"k_proj", "v_proj"})
		}},
		{nil, []string{"TUNE_TRAIN_MAX_STEPS=5"}, func(c *Config) bool { return c.Train.MaxSteps == 5 }},
	}
	for _, c := range cases {
		name := strings.Join(append(append([]string{}, c.overrides...), c.env...), " ")
		t.Run(name, func(t *testing.T) {
			cfg, err := load("x.yaml", doc("lora:", "  r: 6"), c.overrides, c.env)
			if err != nil {
				t.Fatal(err)
			}
			if !c.check(cfg) {
				t.Errorf("not applied: %+v", *cfg)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	s := newSchema()
	cases := []struct{ section, key, want string }{
		{"lora", "rank", "lora.r"},
		{"lora", "R", "lora.r"},
		{"lora", "lora_alpha", "lora.alpha"},
		{"lora", "target_module", "lora.target_modules"},
		{"lora", "target_modls", "lora.target_modules"},
		{"lora", "use_rs_lora", "lora.use_rslora"},
		{"train", "learning_rate", "train.lr"},
		{"train", "gradient_accumulation_steps", "train.grad_accum"},
		{"train", "batchsize", "train.batch_size"},
		{"train", "seq_len", "data.seq_len"},
		{"train", "max_seq_len", "data.seq_len"},
		{"data", "validation_ratio", "data.val_ratio"},
		{"", "trian", "train"},
		{"", "output_dir", "output.dir"},
		{"", "epochs", "train.epochs"},
		{"", "Model", "model"},
		{"checkpoint", "keep", "checkpoint.keep_last"},
	}
	for _, c := range cases {
		if got := s.suggest(c.section, c.key); got != c.want {
			t.Errorf("suggest(%q, %q) = %q, want %q", c.section, c.key, got, c.want)
		}
	}
	if d := levenshtein("kitten", "sitting"); d != 3 {
		t.Errorf("levenshtein = %d", d)
	}
	if d := levenshtein("", "abc"); d != 3 {
		t.Errorf("levenshtein = %d", d)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	cases := []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "configs/x.yaml", Line: 12, Path: "lora.r", Msg: "must be > 0, got 0"}, "configs/x.yaml:12: lora.r: must be > 0, got 0"},
		{FieldError{File: "configs/x.yaml", Path: "lora.r", Msg: "m"}, "configs/x.yaml: lora.r: m"},
		{FieldError{File: "override lora.r=0", Path: "lora.r", Msg: "m"}, "override lora.r=0: lora.r: m"},
		{FieldError{Path: "lora.r", Msg: "m"}, "lora.r: m"},
		{FieldError{File: "f", Line: 3, Msg: "invalid YAML: x"}, "f:3: invalid YAML: x"},
		{FieldError{File: "override a\nb", Msg: "two\nlines"}, `override a\nb: two\nlines`},
	}
	for _, c := range cases {
		if got := c.e.Error(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}

func TestValidateInCode(t *testing.T) {
	c := &Config{}
	err := c.Validate()
	got := messages(t, err)
	if len(got) < 10 || got[0] != "model.path: required: the Hugging Face model directory" {
		t.Errorf("zero Config: %q", got)
	}
	var good Config
	if _, err := load("x.yaml", doc(), nil, nil); err != nil {
		t.Fatal(err)
	}
	cfg, _ := load("x.yaml", doc(), nil, nil)
	good = *cfg
	if err := good.Validate(); err != nil {
		t.Errorf("loaded config does not validate: %v", err)
	}
}

func TestPaths(t *testing.T) {
	wd, _ := os.Getwd()
	cfg, err := load("some/dir/exp1.yaml", []byte("model:\n  path: builtin:tiny\ndata:\n  train: ../d/t.jsonl\n  val: /abs/v.jsonl\nlora:\n  init_from: ad\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Model.Path != "builtin:tiny" {
		t.Errorf("model.path %q", cfg.Model.Path)
	}
	if cfg.Data.Train != filepath.Join(wd, "../d/t.jsonl") {
		t.Errorf("data.train %q", cfg.Data.Train)
	}
	if cfg.Data.Val != "/abs/v.jsonl" {
		t.Errorf("data.val %q", cfg.Data.Val)
	}
	if cfg.LoRA.InitFrom != filepath.Join(wd, "ad") {
		t.Errorf("lora.init_from %q", cfg.LoRA.InitFrom)
	}
	if cfg.Output.Dir != filepath.Join(wd, "runs", "exp1") {
		t.Errorf("output.dir %q", cfg.Output.Dir)
	}
	for in, want := range map[string]string{"configs/demo.yaml": "runs/demo", "a.b.yml": "runs/a.b", "": "runs/run", "x": "runs/x"} {
		if got := DefaultOutputDir(in); got != filepath.FromSlash(want) {
			t.Errorf("DefaultOutputDir(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(p, doc("lora:", "  r: 0"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p, nil)
	if want := p + ":6: lora.r: must be > 0, got 0"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	_, err = Load(filepath.Join(dir, "missing.yaml"), nil)
	if want := filepath.Join(dir, "missing.yaml") + ": cannot read: no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestDumpRoundTrip(t *testing.T) {
	inputs := map[string][]byte{
		"demo":   nil,
		"tricky": []byte("model:\n  path: \"123\"\ndata:\n  train: \"yes\"\n  val: \"/a: b #c\\n'x'\"\noutput:\n  dir: \"~\"\n"),
		"custom": doc("lora:", "  r: 4", "  layers: [1, 3]", "  use_rslora: true", "  target_modules: [q_proj, down_proj]", "train:", "  lr: 1.5e-5", "  eps: 1e-10", "  seed: 18446744073709551615", "output:", "  merged: true"),
	}
	var err error
	if inputs["demo"], err = os.ReadFile("demo.yaml"); err != nil {
		t.Fatal(err)
	}
	for name, data := range inputs {
		t.Run(name, func(t *testing.T) {
			c1, err := load(name+".yaml", data, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkDumpRoundTrip(t, c1)
		})
	}
}

// checkDumpRoundTrip: Dump's YAML loads back to the same config.
func checkDumpRoundTrip(t *testing.T, c *Config) {
	t.Helper()
	out, err := Dump(c)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := load(c.Path, out, nil, nil)
	if err != nil {
		t.Fatalf("Dump output does not load: %v\n%s", err, out)
	}
	c.origins, c2.origins = nil, nil // the lines differ, as they should
	if !reflect.DeepEqual(c, c2) {
		t.Fatalf("round trip differs:\n%+v\n%+v\n%s", *c, *c2, out)
	}
}

// defaults returns the defaults as nested maps ({"lora": {"r": 8, ...}, ...}),
// a fresh copy each call. output.dir is "" there: Load replaces it with
// runs/<config file base name>.
func defaults() map[string]any {
	m := map[string]any{}
	for _, f := range Fields() {
		setNested(m, f.Path, f.Default)
	}
	return m
}

// TestErrorfPlacesTheField: an error found after loading is placed where the
// value came from: the file's line, the override, or nothing set (the file).
func TestErrorfPlacesTheField(t *testing.T) {
	cfg, err := load("c.yaml", []byte("model:\n  path: m\ndata:\n  train: t.jsonl\n  seq_len: 4096\n"), []string{"lora.layers=[30]"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{"data.seq_len", "c.yaml:5: data.seq_len: too long"},
		{"lora.layers[0]", "override lora.layers=[30]: lora.layers[0]: too long"},
		{"output.dir", "c.yaml: output.dir: too long"},
	} {
		if got := cfg.Errorf(c.path, "too %s", "long").Error(); got != c.want {
			t.Errorf("Errorf(%s) = %q, want %q", c.path, got, c.want)
		}
	}
}

// resources.reserve_memory reads sizes and shares of the RAM; a bad one is
// an error at its line.
func TestReserveBytes(t *testing.T) {
	const total = 16_000_000_000
	for in, want := range map[string]int64{"auto": 2_000_000_000, "": 2_000_000_000, "3GB": 3_000_000_000, "512MiB": 512 << 20, "1.5 GiB": 3 << 29, "25%": 4_000_000_000, "0": 0, "100": 100} {
		got, err := Resources{ReserveMemory: in}.ReserveBytes(total)
		if err != nil || got != want {
			t.Errorf("%q: got %d, %v; want %d", in, got, err, want)
		}
	}
	if got, _ := (Resources{ReserveMemory: "auto"}).ReserveBytes(64_000_000_000); got != 6_400_000_000 {
		t.Errorf("auto on 64 GB: %d, want 10%%", got)
	}
	for _, bad := range []string{"lots", "2XB", "-1GB", "150%", "GB"} {
		if _, err := (Resources{ReserveMemory: bad}).ReserveBytes(total); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	_, err := load("c.yaml", []byte("model:\n  path: m\ndata:\n  train: t.jsonl\nresources:\n  reserve_memory: lots\n  nice: 25\n"), nil, nil)
	for _, want := range []string{"c.yaml:6: resources.reserve_memory: \"lots\": want a size", "c.yaml:7: resources.nice: must be in 0..19"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to say %q", err, want)
		}
	}
}
