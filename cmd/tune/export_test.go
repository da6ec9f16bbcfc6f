package main

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tune-dev/tune/checkpoints/gguf"
	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
)

// TestExportMergedShardedAndPEFT: `tune export` of a trained step checkpoint
// as PEFT keeps the tensors exactly; as merged safetensors, sharded small and
// in bf16, it loads back (in tune and in PyTorch) with the loss of base +
// adapter within bf16 rounding; the Ollama directory names its files.
func TestExportMergedShardedAndPEFT(t *testing.T) {
	dir := modelWithTokenizer(t)
	base, md, err := model.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	r := rand.New(rand.NewPCG(3, 3))
	a, err := lora.New(lora.Spec{R: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj", "up_proj"}}, base.Config, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range a.Modules {
		for i := range m.B {
			m.B[i] = r.Float32() - 0.5
		}
	}
	adapterDir := filepath.Join(t.TempDir(), "adapter")
	if err := peft.Write(adapterDir, a.PEFTConfig(dir), a.PEFTTensors()); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()

	peft := filepath.Join(out, "peft")
	if _, err := runTune(t, "export", "--adapter", adapterDir, "--format", "peft", "--out", peft); err != nil {
		t.Fatal(err)
	}
	back, err := lora.FromPEFT(peft, base.Config)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range a.Modules {
		if !slices.Equal(m.A, back.Modules[i].A) || !slices.Equal(m.B, back.Modules[i].B) {
			t.Fatalf("%s changed in the PEFT export", m.Key())
		}
	}

	merged := filepath.Join(out, "merged")
	if _, err := runTune(t, "export", "--adapter", adapterDir, "--format", "merged", "--dtype", "bf16", "--shard-size", "0.0005", "--out", merged); err != nil {
		t.Fatal(err)
	}
	shards, _ := filepath.Glob(filepath.Join(merged, "model-*-of-*.safetensors"))
	if len(shards) < 2 {
		t.Fatalf("expected several shards at 0.5 MiB, got %v", shards)
	}
	for _, f := range []string{"model.safetensors.index.json", "config.json", "tokenizer.json", "tokenizer_config.json"} {
		if _, err := os.Stat(filepath.Join(merged, f)); err != nil {
			t.Error(err)
		}
	}
	var in testmodels.RefInput
	in.InputIDs = [][]int32{{1, 450, 7483, 310, 3444, 338, 3681, 29889}}
	withAdapter, _, err := testmodels.Reference(dir, in, "--adapter", adapterDir)
	if err != nil {
		t.Fatal(err)
	}
	mergedRef, _, err := testmodels.Reference(merged, in)
	if err != nil {
		t.Fatal(err)
	}
	m2, m2Dir, err := model.Open(merged)
	if err != nil {
		t.Fatal(err)
	}
	defer m2Dir.Close()
	res, err := testmodels.RunGraph(m2, model.Batch{IDs: in.InputIDs[0]}, 1, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loss: base+adapter (PyTorch) %.5f, merged bf16: PyTorch %.5f, tune %.5f", withAdapter, mergedRef, res.Loss)
	// bf16 rounding of every weight moves the loss a little; a missing or
	// doubled delta moves it by far more (checked: the adapter changes it).
	if d := math.Abs(float64(mergedRef - withAdapter)); d > 0.02*float64(withAdapter) {
		t.Errorf("merged bf16 loss %.5f, base + adapter %.5f", mergedRef, withAdapter)
	}
	if d := math.Abs(float64(res.Loss - mergedRef)); d > 1e-4*float64(mergedRef) {
		t.Errorf("tune reads the merged model to loss %.6f, PyTorch %.6f", res.Loss, mergedRef)
	}
	baseLoss, _, _ := testmodels.Reference(dir, in)
	if math.Abs(float64(baseLoss-withAdapter)) < 0.1 {
		t.Fatalf("the adapter moves the loss by %g only: the test proves nothing", baseLoss-withAdapter)
	}

	ollama := filepath.Join(out, "ollama")
	if _, err := runTune(t, "export", "--adapter", adapterDir, "--format", "ollama", "--out", ollama); err != nil {
		t.Fatal(err)
	}
	mf, err := os.ReadFile(filepath.Join(ollama, "Modelfile"))
	if err != nil || !strings.Contains(string(mf), "FROM ./base.gguf") || !strings.Contains(string(mf), "ADAPTER ./adapter.gguf") {
		t.Fatalf("Modelfile: %v\n%s", err, mf)
	}
}

// TestExportGGUFQuantizedSummary: `tune export --format gguf --dtype q4_k`
// says which matrices it could not store as Q4_K and what they are instead
// (rows of 32 values: Q5_0; ffn_down's rows of 48: F16), one line per type,
// layers folded; the file holds those types; an unknown --dtype is
// refused with the list.
func TestExportGGUFQuantizedSummary(t *testing.T) {
	dir := modelWithTokenizer(t)
	path := filepath.Join(t.TempDir(), "m.gguf")
	out, err := runTune(t, "export", "--model", dir, "--format", "gguf", "--dtype", "q4_k", "--out", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"14 tensors stored as Q5_0, their rows not whole Q4_K blocks: token_embd.weight, blk.*.ffn_gate.weight, blk.*.ffn_up.weight, blk.*.attn_k.weight, blk.*.attn_output.weight, blk.*.attn_q.weight, blk.*.attn_v.weight, output.weight\n",
		"2 tensors stored as F16, their rows not whole Q4_K blocks: blk.*.ffn_down.weight\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	g, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	types := map[string]string{}
	for _, ti := range g.Tensors {
		types[ti.Name] = ti.Type.String()
	}
	if types["blk.1.attn_v.weight"] != "Q5_0" || types["blk.0.ffn_down.weight"] != "F16" || types["blk.0.attn_norm.weight"] != "F32" {
		t.Errorf("tensor types %v", types)
	}
	_, err = runTune(t, "export", "--model", dir, "--format", "gguf", "--dtype", "q5_k", "--out", path+"2")
	if err == nil || !strings.Contains(err.Error(), "takes f32, f16, bf16, q8_0, q4_0, q4_k") {
		t.Errorf("--dtype q5_k: err = %v", err)
	}
}
