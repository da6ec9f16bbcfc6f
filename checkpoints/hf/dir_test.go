package hf

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tune-dev/tune/checkpoints/safetensors"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/fixture"
)

// modelFiles is a directory layout: file name -> contents.
type modelFiles map[string][]byte

const testConfig = `{"model_type":"llama","hidden_size":4}`

func st(t *testing.T, tensors ...safetensors.Tensor) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.safetensors")
	if err := safetensors.Write(p, tensors, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func makeDir(t *testing.T, files modelFiles) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestOpen(t *testing.T) {
	embed := safetensors.F32("model.embed_tokens.weight", []int{2, 2}, []float32{1, 2, 3, 4})
	norm := safetensors.F32("model.norm.weight", []int{2}, []float32{5, 6})
	head := safetensors.Tensor{Name: "lm_head.weight", DType: dtype.BF16, Shape: []int{2, 2}, Data: fixture.Seq(8)}
	index := `{"metadata":{"total_size":32},"weight_map":{
		"model.embed_tokens.weight":"model-00001-of-00002.safetensors",
		"model.norm.weight":"model-00002-of-00002.safetensors",
		"lm_head.weight":"model-00002-of-00002.safetensors"}}`
	tests := []struct {
		name      string
		files     modelFiles
		wantFiles []string
	}{
		{"single file", modelFiles{
			"config.json":       []byte(testConfig),
			"model.safetensors": st(t, embed, norm, head),
		}, []string{"model.safetensors"}},
		{"sharded with index", modelFiles{
			"config.json":                      []byte(testConfig),
			"model.safetensors.index.json":     []byte(index),
			"model-00001-of-00002.safetensors": st(t, embed),
			"model-00002-of-00002.safetensors": st(t, norm, head),
		}, []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}},
		{"model.safetensors wins over an index", modelFiles{
			"config.json":                  []byte(testConfig),
			"model.safetensors":            st(t, embed, norm, head),
			"model.safetensors.index.json": []byte(`not even JSON`),
		}, []string{"model.safetensors"}},
		{"any *.safetensors without index", modelFiles{
			"config.json":          []byte(testConfig),
			"b.safetensors":        st(t, norm, head),
			"a.safetensors":        st(t, embed),
			".a.safetensors.tmp-1": []byte("junk"),
			".hidden.safetensors":  []byte("junk"),
			"tokenizer.json":       []byte(`{}`),
		}, []string{"a.safetensors", "b.safetensors"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := makeDir(t, tt.files)
			m, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.Path != dir || string(m.Config) != testConfig {
				t.Errorf("Path %q, Config %q", m.Path, m.Config)
			}
			want := []string{"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"}
			if got := m.Names(); !reflect.DeepEqual(got, want) {
				t.Errorf("Names() = %v, want %v", got, want)
			}
			var files []string
			for _, f := range m.Files() {
				files = append(files, filepath.Base(f))
			}
			if !reflect.DeepEqual(files, tt.wantFiles) {
				t.Errorf("Files() = %v, want %v", files, tt.wantFiles)
			}
			for _, w := range []safetensors.Tensor{embed, norm, head} {
				if !m.Has(w.Name) {
					t.Errorf("Has(%q) = false", w.Name)
				}
				got, err := m.Tensor(w.Name)
				if err != nil {
					t.Fatal(err)
				}
				if got.DType != w.DType || !reflect.DeepEqual(got.Shape, w.Shape) || !bytes.Equal(got.Data, w.Data) {
					t.Errorf("Tensor(%q) = %+v, want %+v", w.Name, got, w)
				}
				if info, ok := m.Info(w.Name); !ok || info.DType != w.DType {
					t.Errorf("Info(%q) = %+v %v", w.Name, info, ok)
				}
			}
			if m.Has("missing") {
				t.Error(`Has("missing") = true`)
			}
			_, err = m.Tensor("model.layers.0.mlp.up_proj.weight")
			fixture.WantErr(t, err, "model dir "+dir+`: no tensor "model.layers.0.mlp.up_proj.weight"`)
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			_, err = m.Tensor(embed.Name)
			fixture.WantErr(t, err, "closed")
		})
	}
}

func TestOpenErrors(t *testing.T) {
	a := safetensors.F32("a", []int{1}, []float32{1})
	b := safetensors.F32("b", []int{1}, []float32{2})
	cfg := []byte(testConfig)
	tests := []struct {
		name  string
		files modelFiles
		want  string // "DIR" is replaced by the directory
	}{
		{"no config.json", modelFiles{"model.safetensors": st(t, a)},
			"model dir DIR: config.json: no such file"}, // the directory's path once
		{"config not JSON", modelFiles{"config.json": []byte("{oops"), "model.safetensors": st(t, a)},
			"model dir DIR: config.json is not valid JSON"},
		{"no weights at all", modelFiles{"config.json": cfg},
			"model dir DIR: no model.safetensors, model.safetensors.index.json or other *.safetensors file"},
		{"malformed index JSON", modelFiles{"config.json": cfg, "model.safetensors.index.json": []byte(`{"weight_map":{"a":`)},
			filepath.Join("DIR", "model.safetensors.index.json") + ": unexpected end of JSON input"},
		{"index weight_map wrong type", modelFiles{"config.json": cfg, "model.safetensors.index.json": []byte(`{"weight_map":{"a":1}}`)},
			"model.safetensors.index.json: json: cannot unmarshal"},
		{"index without weight_map", modelFiles{"config.json": cfg, "model.safetensors.index.json": []byte(`{"metadata":{}}`)},
			"weight_map is missing or empty"},
		{"shard listed in index missing", modelFiles{
			"config.json":                  cfg,
			"model.safetensors.index.json": []byte(`{"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}}`),
			"s1.safetensors":               st(t, a),
		}, "shard listed in model.safetensors.index.json: open " + filepath.Join("DIR", "s2.safetensors") + ": no such file"},
		{"tensor in weight_map absent from shard", modelFiles{
			"config.json":                  cfg,
			"model.safetensors.index.json": []byte(`{"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}}`),
			"s1.safetensors":               st(t, a),
			"s2.safetensors":               st(t, b),
		}, `model.safetensors.index.json maps tensor "b" to s1.safetensors, which does not contain it`},
		{"shard outside the directory", modelFiles{
			"config.json":                  cfg,
			"model.safetensors.index.json": []byte(`{"weight_map":{"a":"../s1.safetensors"}}`),
		}, `shard "../s1.safetensors" is not a file inside the directory`},
		{"duplicate across indexed shards", modelFiles{
			"config.json":                  cfg,
			"model.safetensors.index.json": []byte(`{"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}}`),
			"s1.safetensors":               st(t, a),
			"s2.safetensors":               st(t, a, b),
		}, `tensor "a" is in both s1.safetensors and s2.safetensors`},
		{"duplicate across unindexed files", modelFiles{
			"config.json":   cfg,
			"x.safetensors": st(t, a),
			"y.safetensors": st(t, a),
		}, `tensor "a" is in both x.safetensors and y.safetensors`},
		{"corrupt shard names the shard", modelFiles{
			"config.json":       cfg,
			"model.safetensors": []byte("tiny"),
		}, filepath.Join("DIR", "model.safetensors") + ": file is 4 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := makeDir(t, tt.files)
			m, err := Open(dir)
			fixture.WantErr(t, err, strings.ReplaceAll(tt.want, "DIR", dir))
			if m != nil {
				t.Error("got a Dir with an error")
			}
		})
	}
}
