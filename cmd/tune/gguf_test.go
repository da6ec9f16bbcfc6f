package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tune-dev/tune/checkpoints/gguf"
	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/internal/testmodels"
)

// TestGGUFModel: a GGUF written by `tune export --format gguf --dtype f32`
// from a llama directory (Llama 2's tokenizer) works as --model everywhere,
// giving what the directory gives: inspect's figures, eval's loss (base and
// base + adapter) bit for bit, generate's greedy text; bench runs; a GGUF adapter
// exported against it is byte for byte the one exported against the
// directory (which export's agreement test checks in llama.cpp), and a PEFT
// export names the GGUF's model and says where the name came from.
func TestGGUFModel(t *testing.T) {
	dir := modelWithTokenizer(t)
	work := t.TempDir()
	g := filepath.Join(work, "base.gguf")
	if _, err := runTune(t, "export", "--model", dir, "--format", "gguf", "--dtype", "f32", "--out", g); err != nil {
		t.Fatal(err)
	}

	out, err := runTune(t, "inspect", g)
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(out), " ")
	// 32000·32 embed and lm_head + 32 norm + 2 layers of (q 32·32 + k,v
	// 2·16·32 + o 32·32 + mlp 3·48·32 + norms 2·32): 2.06M values, all F32
	// in the file, 7.9 MiB.
	for _, want := range []string{"model_type llama", "parameters 2.06M", "dtypes [f32 2.06M]", "stored [f32 7.9 MiB]", "format GGUF", "files 1"} {
		if !strings.Contains(flat, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}

	adapter := filepath.Join(work, "adapter")
	randomAdapter(t, g, g, adapter, rand.New(rand.NewPCG(3, 4)))

	data := filepath.Join(work, "eval.jsonl")
	if err := os.WriteFile(data, []byte(`{"text": "The quick brown fox jumps over the lazy dog."}`+"\n"+`{"text": "Hello, world! 12345 ünïcödé"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	evals := map[string]string{}
	for _, m := range []string{dir, g} {
		out, err := runTune(t, "eval", "--model", m, "--data", data, "--json", "--adapter", adapter, "--seq", "32")
		if err != nil {
			t.Fatal(err)
		}
		var res map[string]struct {
			Loss   float64 `json:"loss"`
			Tokens int     `json:"tokens"`
		}
		// The adapter names the GGUF as its base: eval on the directory warns first.
		if i := strings.Index(out, "{"); i > 0 {
			out = out[i:]
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || res["base"].Tokens == 0 || res["base"].Loss == res["adapter"].Loss {
			t.Fatalf("eval --json printed %q (%v)", out, err)
		}
		evals[m] = out
	}
	if evals[dir] != evals[g] {
		t.Errorf("eval on the GGUF printed\n%s\non the directory\n%s", evals[g], evals[dir])
	}

	gen := map[string]string{}
	for _, m := range []string{dir, g} {
		if gen[m], err = runTune(t, "generate", "--model", m, "--prompt", "Once upon a time", "--max-tokens", "8"); err != nil {
			t.Fatal(err)
		}
	}
	if gen[dir] != gen[g] || gen[g] == "" {
		t.Errorf("generate on the GGUF printed %q, on the directory %q", gen[g], gen[dir])
	}

	ad := map[string][]byte{}
	for _, m := range []string{dir, g} {
		p := filepath.Join(t.TempDir(), "adapter.gguf")
		if _, err := runTune(t, "export", "--model", m, "--adapter", adapter, "--format", "gguf-adapter", "--out", p); err != nil {
			t.Fatal(err)
		}
		if ad[m], err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(ad[dir], ad[g]) {
		t.Error("the GGUF adapter exported against the GGUF base differs from the one exported against the directory")
	}

	out, err = runTune(t, "bench", "../../configs/demo.yaml", "model.path="+g, "--steps", "1", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var bench struct {
		Model      string  `json:"model"`
		TokensPerS float64 `json:"tokens_per_s"`
	}
	if err := json.Unmarshal([]byte(out), &bench); err != nil || !(bench.TokensPerS > 0) {
		t.Errorf("bench --json on the GGUF printed %q (%v)", out, err)
	}

	// A merged export from the GGUF is the directory's merged export, with
	// a tokenizer written from the GGUF's metadata that tokenizes alike.
	merged := map[string][]byte{}
	for _, m := range []string{dir, g} {
		out := filepath.Join(t.TempDir(), "merged")
		if _, err := runTune(t, "export", "--model", m, "--adapter", adapter, "--format", "merged", "--out", out); err != nil {
			t.Fatal(err)
		}
		if merged[m], err = os.ReadFile(filepath.Join(out, "model.safetensors")); err != nil {
			t.Fatal(err)
		}
		ids, err := runTune(t, "tokenize", "--model", out, "--text", "Hello, world! It's 2024.", "--json")
		if err != nil {
			t.Fatal(err)
		}
		merged[m+" ids"] = []byte(ids)
	}
	if !bytes.Equal(merged[dir], merged[g]) || !bytes.Equal(merged[dir+" ids"], merged[g+" ids"]) {
		t.Errorf("merged export from the GGUF differs from the directory's (tokenized %s vs %s)", merged[g+" ids"], merged[dir+" ids"])
	}

	p := filepath.Join(work, "peft")
	out, err = runTune(t, "export", "--model", g, "--adapter", adapter, "--format", "peft", "--out", p)
	if err != nil {
		t.Fatal(err)
	}
	pc, st, err := peft.Read(p)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	// tune's GGUF export names the model after its directory and records
	// no repository: the PEFT export says so.
	if want := filepath.Base(dir); pc.BaseModelNameOrPath != want || !strings.Contains(out, "general.name") {
		t.Errorf("base_model_name_or_path %q (want %q), output %q", pc.BaseModelNameOrPath, want, out)
	}
}

// TestHostileGGUF: GGUF files that lie (counts, dimensions, offsets) or hold
// what tune does not build end `tune inspect` with one line naming the file
// and the key or tensor, within the memory limit.
func TestHostileGGUF(t *testing.T) {
	f32 := func(n int) func() ([]byte, error) {
		return func() ([]byte, error) { return make([]byte, 4*n), nil }
	}
	llama := []gguf.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "llama.block_count", Value: uint32(1)},
		{Key: "llama.embedding_length", Value: uint32(8)},
		{Key: "llama.feed_forward_length", Value: uint32(16)},
		{Key: "llama.attention.head_count", Value: uint32(2)},
	}
	embd := gguf.Tensor{Name: "token_embd.weight", Dims: []uint64{8, 10}, Type: gguf.F32, Data: f32(80)}
	write := func(t *testing.T, kv []gguf.KV, tensors ...gguf.Tensor) []byte {
		p := filepath.Join(t.TempDir(), "m.gguf")
		if err := gguf.Write(p, kv, tensors); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	with := func(key string, v any) []gguf.KV {
		out := []gguf.KV{}
		for _, e := range llama {
			if e.Key != key {
				out = append(out, e)
			}
		}
		return append(out, gguf.KV{Key: key, Value: v})
	}
	// patchU64 overwrites the 8 bytes after the first occurrence of marker.
	patchU64 := func(t *testing.T, b []byte, marker string, skip int, v uint64) []byte {
		i := bytes.Index(b, []byte(marker))
		if i < 0 {
			t.Fatalf("no %q in the file", marker)
		}
		b = bytes.Clone(b)
		binary.LittleEndian.PutUint64(b[i+len(marker)+skip:], v)
		return b
	}
	good := write(t, llama, embd)
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"unknown architecture", write(t, with("general.architecture", "gemma2"), embd), `general.architecture: "gemma2" is not supported; expected llama, qwen2 or qwen3`},
		{"a billion layers", write(t, with("llama.block_count", uint32(1e9)), embd), "llama.block_count: 1000000000; tune reads models with at most 1024"},
		{"negative heads", write(t, with("llama.attention.head_count", int32(-2)), embd), "llama.attention.head_count: -2; expected a positive integer"},
		{"an adapter", write(t, with("general.type", "adapter"), embd), "general.type: adapter; expected a model"},
		{"tensor count", patchU64(t, good, "GGUF\x03\x00\x00\x00", 0, 1<<40), "tensor count 1099511627776 is more than the"},
		{"metadata count", patchU64(t, good, "GGUF\x03\x00\x00\x00", 8, 1<<40), "metadata count 1099511627776 is more than the"},
		{"string length", patchU64(t, good, "GGUF\x03\x00\x00\x00", 16, 1<<62), "beyond the end of the file"},
		{"huge dimension", patchU64(t, good, "token_embd.weight\x02\x00\x00\x00", 0, 1<<61), `tensor "token_embd.weight"`},
		{"offset beyond the file", patchU64(t, good, "token_embd.weight\x02\x00\x00\x00", 8+8+4, 1<<20), `tensor "token_embd.weight" bytes [1048576, 1048896) lie beyond`},
		{"unknown tensor", write(t, llama, embd, gguf.Tensor{Name: "blk.0.attn_qkv.weight", Dims: []uint64{8, 24}, Type: gguf.F32, Data: f32(192)}), "tensor blk.0.attn_qkv.weight: not a tensor of the llama, qwen2 or qwen3 models tune builds"},
		{"missing layer tensor", good, "llama.block_count is 1, but there is no tensor blk.0.attn_norm.weight (model.layers.0.input_layernorm.weight)"},
		{"truncated", good[:len(good)-100], "truncated file"},
		{"not GGUF", []byte("GGUX\x03\x00\x00\x00" + strings.Repeat("\x00", 40)), "not a GGUF file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.gguf")
			if err := os.WriteFile(p, c.file, 0o644); err != nil {
				t.Fatal(err)
			}
			out, code := runLimited(t, "inspect", p)
			wantOneLineError(t, out, code, 1, c.want)
			if !strings.Contains(out, p) {
				t.Errorf("%q does not name the file", out)
			}
		})
	}
}

// TestTrainOnGGUFBase: `tune run` with model.path a GGUF (exported from a
// directory) trains exactly as on the directory: the same losses and the
// same adapter bytes. The adapter, exported as a GGUF adapter for that file,
// gives in llama.cpp (node-llama-cpp) the loss `tune eval` reports for base
// + adapter.
func TestTrainOnGGUFBase(t *testing.T) {
	requireLlamaCpp(t)
	bin := tuneBinary(t)
	dir := modelWithTokenizer(t)
	work := t.TempDir()
	g := filepath.Join(work, "base.gguf")
	if _, err := runTune(t, "export", "--model", dir, "--format", "gguf", "--dtype", "f32", "--out", g); err != nil {
		t.Fatal(err)
	}
	train := func(base, out string) {
		args := []string{"run", "../../configs/demo.yaml", "-q", "model.path=" + base, "output.dir=" + out, "train.max_steps=12",
			"checkpoint.every=100", "train.eval_every=0", "data.val_ratio=0"}
		if b, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("tune run on %s: %v\n%s", base, err, b)
		}
	}
	runDir, runGGUF := filepath.Join(work, "run-dir"), filepath.Join(work, "run-gguf")
	train(dir, runDir)
	train(g, runGGUF)
	ma, _ := os.ReadFile(filepath.Join(runDir, "metrics.jsonl"))
	mb, _ := os.ReadFile(filepath.Join(runGGUF, "metrics.jsonl"))
	if la, lb := lossesOf(ma), lossesOf(mb); la != lb || la == "" {
		t.Errorf("losses differ:\ndirectory %s\nGGUF      %s", la, lb)
	}
	aa, _ := os.ReadFile(filepath.Join(runDir, "adapter", "adapter_model.safetensors"))
	ab, _ := os.ReadFile(filepath.Join(runGGUF, "adapter", "adapter_model.safetensors"))
	if len(aa) == 0 || !bytes.Equal(aa, ab) {
		t.Error("the adapter trained on the GGUF differs from the one trained on the directory")
	}

	adapterInLlamaCpp(t, g, filepath.Join(runGGUF, "adapter"), 1e-4)
}

// requireLlamaCpp fails the test when the llama.cpp oracle is not installed.
func requireLlamaCpp(t *testing.T) {
	t.Helper()
	for _, p := range []string{"node_modules/node-llama-cpp/package.json", "node_modules/@node-llama-cpp/linux-x64/bins"} {
		if _, err := os.Stat(filepath.Join(testmodels.LlamaCppDir(), p)); err != nil {
			t.Fatalf("llama.cpp oracle not installed (%v): run make setup", err)
		}
	}
}

// adapterInLlamaCpp exports the trained adapter as a GGUF adapter for the
// GGUF base g and checks that llama.cpp's loss on 40 random tokens, with the
// adapter and without, is `tune eval`'s within tol.
func adapterInLlamaCpp(t *testing.T, g, adapter string, tol float64) {
	t.Helper()
	work := t.TempDir()
	adapterGGUF := filepath.Join(work, "adapter.gguf")
	// --model defaults to the adapter's base_model_name_or_path: the GGUF.
	if out, err := runTune(t, "export", "--adapter", adapter, "--format", "gguf-adapter", "--out", adapterGGUF); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	r := rand.New(rand.NewPCG(9, 9))
	ids := make([]int32, 40)
	for i := range ids {
		ids[i] = int32(r.IntN(32000))
	}
	data := filepath.Join(work, "ids.jsonl")
	line, _ := json.Marshal(map[string]any{"input_ids": ids})
	if err := os.WriteFile(data, append(line, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runTune(t, "eval", "--model", g, "--adapter", adapter, "--data", data, "--json", "--seq", "40")
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]struct {
		Loss   float64 `json:"loss"`
		Tokens int     `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res["adapter"].Tokens != len(ids)-1 {
		t.Fatalf("eval --json printed %q (%v)", out, err)
	}
	// The adapter must move the loss well beyond tol, or a GGUF adapter
	// llama.cpp ignored would pass.
	if d := math.Abs(res["adapter"].Loss - res["base"].Loss); d < max(1e-3, 3*tol) {
		t.Fatalf("training moved the loss by %.2g only: the comparison would prove nothing", d)
	}
	got, err := testmodels.LlamaCpp([]testmodels.ScoreRun{{Model: g, Adapters: []string{adapterGGUF}, IDs: ids}, {Model: g, IDs: ids}})
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"adapter", "base"} {
		var nll float64
		for _, lp := range got[i].LogProbs {
			nll -= lp
		}
		nll /= float64(len(got[i].LogProbs))
		t.Logf("%s: tune %.7f, llama.cpp %.7f", name, res[name].Loss, nll)
		if d := math.Abs(nll - res[name].Loss); d > tol {
			t.Errorf("%s: llama.cpp's loss %.7f, tune's %.7f (difference %.2g)", name, nll, res[name].Loss, d)
		}
	}
}
