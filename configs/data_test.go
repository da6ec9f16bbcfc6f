package configs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestDataSources: data.sources in block and flow YAML, per-source formats,
// weights and field names, paths resolved, data.fields as a mapping, the new
// data keys' defaults.
func TestDataSources(t *testing.T) {
	wd, _ := os.Getwd()
	y := "model:\n  path: m\n" +
		"data:\n" +
		"  sources:\n" +
		"    - path: data/chat.jsonl\n" +
		"      format: chat\n" +
		"      fields: {messages: conversations}\n" +
		"    - {path: /abs/b.parquet, weight: 2.5}\n" +
		"    - path: \"code/**/*.go\"\n" +
		"      format: text\n" +
		"      weight: 0.5\n" +
		"  format: instruction\n" +
		"  fields:\n" +
		"    instruction: question\n" +
		"    output: answer\n" +
		"  truncation: left\n" +
		"  max_len: 256\n" +
		"  train_on_inputs: true\n" +
		"  skip_bad_records: true\n" +
		"  prompt_template: alpaca\n"
	cfg, err := load("x.yaml", []byte(y), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Source{
		{Path: filepath.Join(wd, "data/chat.jsonl"), Format: "chat", Weight: 1, Fields: map[string]string{"messages": "conversations"}},
		{Path: "/abs/b.parquet", Weight: 2.5},
		{Path: filepath.Join(wd, "code/**/*.go"), Format: "text", Weight: 0.5},
	}
	d := cfg.Data
	if !reflect.DeepEqual(d.Sources, want) {
		t.Errorf("sources %+v", d.Sources)
	}
	if !reflect.DeepEqual(d.Fields, map[string]string{"instruction": "question", "output": "answer"}) || d.Truncation != "left" || d.MaxLen != 256 ||
		!d.TrainOnInputs || !d.SkipBadRecords || d.PromptTemplate != "alpaca" || d.Train != "" {
		t.Errorf("data %+v", d)
	}

	// Overrides and environment variables take YAML or a=b lists.
	cfg, err = load("x.yaml", []byte("model:\n  path: m\ndata:\n  train: t.jsonl\n  fields: {text: body}\n"),
		[]string{"data.fields=instruction=q,output=a", "data.truncation=split"}, []string{"TUNE_DATA_SKIP_BAD_RECORDS=true"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Data.Fields, map[string]string{"instruction": "q", "output": "a"}) || cfg.Data.Truncation != "split" || !cfg.Data.SkipBadRecords {
		t.Errorf("overrides: %+v", cfg.Data)
	}
	cfg, err = load("x.yaml", []byte("model:\n  path: m\n"), []string{"data.sources=[{path: /a.jsonl, weight: 3}, {path: /b.jsonl, format: text}]"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Data.Sources, []Source{{Path: "/a.jsonl", Weight: 3}, {Path: "/b.jsonl", Format: "text", Weight: 1}}) {
		t.Errorf("sources override: %+v", cfg.Data.Sources)
	}
}

// TestDataValidation: every data mistake is one line with its path and line.
func TestDataValidation(t *testing.T) {
	cases := []struct {
		yaml      string
		overrides []string
		want      []string
	}{
		{"data:\n  train: t.jsonl\n  sources:\n    - path: a.jsonl\n", nil,
			[]string{"x.yaml:3: data.sources: cannot be combined with data.train; set one of them"}},
		{"data:\n  sources:\n    - path: a.jsonl\n      weight: 0\n    - format: chat\n    - path: c.jsonl\n      format: chatt\n      fields: {mesages: x}\n", nil,
			[]string{
				"x.yaml:2: data.sources[0].weight: must be a finite number > 0, got 0",
				"x.yaml:2: data.sources[1].path: required: a file, a directory or a glob",
				`x.yaml:2: data.sources[2].format: must be one of pretokenized, text, instruction, chat; got "chatt"; did you mean chat?`,
				`x.yaml:2: data.sources[2].fields: unknown field "mesages"; did you mean messages? (fields: instruction, input, output, system, messages, role, content, text, input_ids, labels)`,
			}},
		{"data:\n  sources:\n    - path: a.jsonl\n      wieght: 2\n", nil,
			[]string{`x.yaml:2: data.sources[0]: unknown key "wieght"; a source has path, format, weight, fields; did you mean weight?`}},
		{"data:\n  sources:\n    - path: a.jsonl\n      weight: heavy\n", nil,
			[]string{`x.yaml:2: data.sources[0].weight: expected a number, got "heavy"`}},
		{"data:\n  sources: a.jsonl\n", nil,
			[]string{`x.yaml:2: data.sources: expected a list of sources, e.g. [{path: a.jsonl}, {path: b.parquet, weight: 2}], got "a.jsonl"`}},
		{"data:\n  train: t.jsonl\n  fields: [instruction]\n", nil,
			[]string{`x.yaml:3: data.fields: expected a mapping of names (e.g. {instruction: question}) or a=b pairs, got "instruction"`}},
		{"data:\n  train: t.jsonl\n  fields: {output: [a]}\n", nil,
			[]string{`x.yaml:3: data.fields[output]: expected a name, got a list`}},
		{"data:\n  train: t.jsonl\n  truncation: middle\n  max_len: 1000\n  prompt_template: chatml\n", nil,
			[]string{
				`x.yaml:5: data.prompt_template: must be one of auto, chat_template, alpaca; got "chatml"`,
				"x.yaml:4: data.max_len: must be <= data.seq_len (512), got 1000; an example cannot be longer than a row",
				`x.yaml:3: data.truncation: must be one of right, left, drop, split; got "middle"`,
			}},
		{"data:\n  sources:\n    - path: builtin:counting\n", nil,
			[]string{`x.yaml:2: data.sources[0].path: builtin data sets go in data.train, not data.sources; got "builtin:counting"`}},
		{"data:\n  train: t.jsonl\n", []string{"data.sources=[{path: a}]"},
			[]string{"override data.sources=[{path: a}]: data.sources: cannot be combined with data.train; set one of them"}},
	}
	for _, c := range cases {
		_, err := load("x.yaml", []byte("model:\n  path: m\n"+c.yaml), c.overrides, nil)
		got := messages(t, err)
		// The base adds two lines before the case's YAML.
		var want []string
		for _, w := range c.want {
			want = append(want, shiftLine(w, 2))
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q:\ngot  %s\nwant %s", c.yaml, strings.Join(got, "\n     "), strings.Join(want, "\n     "))
		}
	}
}

// shiftLine adds n to the line number of "x.yaml:N: ...".
func shiftLine(s string, n int) string {
	rest, ok := strings.CutPrefix(s, "x.yaml:")
	if !ok {
		return s
	}
	num, tail, ok := strings.Cut(rest, ": ")
	if !ok {
		return s
	}
	var line int
	for _, c := range num {
		if c < '0' || c > '9' {
			return s
		}
		line = line*10 + int(c-'0')
	}
	return "x.yaml:" + itoa(line+n) + ": " + tail
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestDataDumpRoundTrip: a config with sources and fields survives Dump and Load.
func TestDataDumpRoundTrip(t *testing.T) {
	y := "model:\n  path: m\ndata:\n  sources:\n    - path: /a.jsonl\n      format: chat\n      fields: {messages: conversations, role: from}\n    - path: /b.parquet\n      weight: 0.25\n  fields: {text: body}\n  truncation: drop\n"
	c1, err := load("x.yaml", []byte(y), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Dump(c1)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := load("x.yaml", out, nil, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	c1.origins, c2.origins = nil, nil // the lines differ, as they should
	if !reflect.DeepEqual(c1, c2) {
		t.Errorf("round trip differs:\n%+v\n%+v\n%s", c1.Data, c2.Data, out)
	}
}
