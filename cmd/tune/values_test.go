package main

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/checkpoints/safetensors"
	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
)

// TestSamplingFlagsChecked: out-of-range generate flags are usage errors.
func TestSamplingFlagsChecked(t *testing.T) {
	dir := modelWithTokenizer(t)
	for _, c := range []struct{ flag, value, want string }{
		{"--max-tokens", "-5", "--max-tokens -5: expected at least 1"},
		{"--max-tokens", "0", "--max-tokens 0: expected at least 1"},
		{"--temperature", "-1", "--temperature -1: expected 0 (greedy) or a positive number"},
		{"--temperature", "NaN", "--temperature NaN"},
		{"--top-p", "0", "--top-p 0: expected a number in (0, 1]"},
		{"--top-p", "1.5", "--top-p 1.5"},
	} {
		out, code := runLimited(t, "generate", "--model", dir, "--prompt", "Hi", c.flag, c.value)
		wantOneLineError(t, out, code, 2, c.want)
	}
}

// TestValidateChecksTheFiles: what tune run would refuse after loading the
// model, tune validate refuses first, with the same line: exit code 2, the
// config file and line of the field. tune run says the same.
func TestValidateChecksTheFiles(t *testing.T) {
	modelDir := modelWithTokenizer(t) // 2 layers, max_position_embeddings 256, no chat template
	work := t.TempDir()
	data := filepath.Join(work, "d.jsonl")
	os.WriteFile(data, []byte(`{"text": "hello"}`+"\n"), 0o644)
	other := t.TempDir()
	spec := testmodels.Tiny("qwen2")
	spec.Hidden, spec.Intermediate = 64, 96 // another model's shapes
	if err := builtin.Write(other, spec); err != nil {
		t.Fatal(err)
	}
	base, md, err := model.Open(other)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := lora.New(lora.Spec{R: 2, Alpha: 4, Targets: []string{"q_proj"}}, base.Config, rand.New(rand.NewPCG(1, 1)))
	md.Close()
	foreign := filepath.Join(work, "foreign")
	if err := peft.Write(foreign, a.PEFTConfig(other), a.PEFTTensors()); err != nil {
		t.Fatal(err)
	}
	head := "model:\n  path: " + modelDir + "\ndata:\n  train: " + data + "\n  format: text\n  seq_len: 128\n"
	cases := []struct{ name, yaml, want string }{
		{"missing model", "model:\n  path: " + filepath.Join(work, "nope") + "\ndata:\n  train: " + data + "\n  seq_len: 128\n", ":2: model.path: model dir " + filepath.Join(work, "nope")},
		{"missing data", "model:\n  path: " + modelDir + "\ndata:\n  train: " + filepath.Join(work, "none.jsonl") + "\n  seq_len: 128\n", ":4: data.train: " + filepath.Join(work, "none.jsonl") + ": no such file or directory"},
		{"glob without matches", "model:\n  path: " + modelDir + "\ndata:\n  train: " + filepath.Join(work, "**/*.parquet") + "\n  seq_len: 128\n", ":4: data.train: " + filepath.Join(work, "**/*.parquet") + ": no file matches"},
		{"layer out of range", head + "lora:\n  layers: [0, 7]\n", ":8: lora.layers[1]: layer 7 does not exist: the model has 2 (0 to 1)"},
		{"seq_len above the model", strings.Replace(head, "seq_len: 128", "seq_len: 4096", 1), ":6: data.seq_len: 4096 exceeds the model's max_position_embeddings 256"},
		{"init_from missing", head + "lora:\n  init_from: " + filepath.Join(work, "gone") + "\n", ":8: lora.init_from: PEFT adapter: open " + filepath.Join(work, "gone")},
		{"init_from for another model", head + "lora:\n  init_from: " + foreign + "\n", ":8: lora.init_from: " + foreign},
		{"chat without a template", "model:\n  path: " + modelDir + "\ndata:\n  train: " + data + "\n  format: chat\n  seq_len: 128\n", ":5: data.format: chat data need a chat template, and " + modelDir + " has none"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(work, strings.ReplaceAll(c.name, " ", "_")+".yaml")
			os.WriteFile(path, []byte(c.yaml), 0o644)
			for _, sub := range []string{"validate", "run"} {
				out, code := runLimited(t, sub, path, "output.dir="+filepath.Join(work, "out-"+strings.ReplaceAll(c.name, " ", "_")))
				wantOneLineError(t, out, code, 2, path+c.want)
			}
		})
	}
	ok := filepath.Join(work, "ok.yaml")
	os.WriteFile(ok, []byte(head), 0o644)
	if out, code := runLimited(t, "validate", ok); code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("a valid config: exit code %d, %s", code, out)
	}
}

// TestRunIntoFinishedDir: a second run into a directory that holds
// checkpoints is a config problem (exit 2) naming output.dir.
func TestRunIntoFinishedDir(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	args := []string{"run", "../../configs/demo.yaml", "-q", "output.dir=" + out, "train.max_steps=2", "checkpoint.every=1", "train.eval_every=0"}
	if o, code := runLimited(t, args...); code != 0 {
		t.Fatalf("first run: exit code %d\n%s", code, o)
	}
	o, code := runLimited(t, args...)
	wantOneLineError(t, o, code, 2, "output.dir: "+filepath.Join(out, "checkpoints")+" already holds checkpoints of an earlier run (up to step 2): continue it with --resume")
}

// TestNonFiniteWeightsNamed: a NaN in a base weight fails eval at load,
// naming the tensor, instead of printing loss NaN.
func TestNonFiniteWeightsNamed(t *testing.T) {
	dir := t.TempDir()
	if err := builtin.Write(dir, testmodels.Tiny("llama")); err != nil {
		t.Fatal(err)
	}
	st, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info("model.layers.1.mlp.up_proj.weight")
	st.Close()
	b, _ := os.ReadFile(filepath.Join(dir, "model.safetensors"))
	hdr := int64(binary.LittleEndian.Uint64(b))
	binary.LittleEndian.PutUint32(b[8+hdr+info.Begin+4*10:], 0x7fc00000)
	os.WriteFile(filepath.Join(dir, "model.safetensors"), b, 0o644)
	data := filepath.Join(t.TempDir(), "d.jsonl")
	os.WriteFile(data, []byte(`{"input_ids": [1, 2, 3]}`+"\n"), 0o644)
	out, code := runLimited(t, "eval", "--model", dir, "--data", data)
	wantOneLineError(t, out, code, 1, "tensor model.layers.1.mlp.up_proj.weight (F32 [48 32]) holds a NaN or infinity at element 10")
}

// TestAdapterForAnotherBaseWarns: base_model_name_or_path naming another
// model is a warning, and the adapter still applies when it fits.
func TestAdapterForAnotherBaseWarns(t *testing.T) {
	dir := modelWithTokenizer(t)
	base, md, err := model.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := lora.New(lora.Spec{R: 2, Alpha: 4, Targets: []string{"q_proj"}}, base.Config, rand.New(rand.NewPCG(1, 1)))
	md.Close()
	ad := filepath.Join(t.TempDir(), "adapter")
	if err := peft.Write(ad, a.PEFTConfig("meta-llama/Llama-3.2-1B"), a.PEFTTensors()); err != nil {
		t.Fatal(err)
	}
	out, code := runLimited(t, "generate", "--model", dir, "--adapter", ad, "--prompt", "Hi", "--max-tokens", "2")
	if code != 0 || !strings.Contains(out, "tune: warning: the adapter was trained on meta-llama/Llama-3.2-1B, not "+dir) {
		t.Fatalf("exit code %d, output %q; want a warning and success", code, out)
	}
}
