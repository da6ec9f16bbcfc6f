package lora

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/checkpoints/safetensors"
	"github.com/tune-dev/tune/model"
)

func tinyConfig() model.Config {
	return model.Config{ModelType: "llama", Hidden: 8, Intermediate: 12, Layers: 3, Heads: 2, KVHeads: 1, HeadDim: 4, Vocab: 10}
}

func TestNewFollowsPEFT(t *testing.T) {
	a, err := New(Spec{R: 4, Alpha: 8, Targets: []string{"v_proj", "q_proj"}, Layers: []int{2, 0}}, tinyConfig(), rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, m := range a.Modules {
		keys = append(keys, m.Key())
	}
	want := []string{
		"base_model.model.model.layers.0.self_attn.q_proj", "base_model.model.model.layers.0.self_attn.v_proj",
		"base_model.model.model.layers.2.self_attn.q_proj", "base_model.model.model.layers.2.self_attn.v_proj",
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("modules %v, want %v", keys, want)
	}
	q, v := a.Modules[0], a.Modules[1]
	if q.In != 8 || q.Out != 8 || v.In != 8 || v.Out != 4 {
		t.Fatalf("shapes q %dx%d v %dx%d", q.Out, q.In, v.Out, v.In)
	}
	bound := float32(1 / math.Sqrt(8)) // kaiming_uniform(a=√5): ±1/√fan_in
	var maxAbs float32
	for _, x := range q.A {
		maxAbs = max(maxAbs, float32(math.Abs(float64(x))))
	}
	if maxAbs > bound || maxAbs < bound*0.7 {
		t.Errorf("A spans ±%g, want about ±%g", maxAbs, bound)
	}
	for _, x := range q.B {
		if x != 0 {
			t.Fatal("B must start at zero")
		}
	}
	if a.Spec.Scale() != 2 || (Spec{R: 4, Alpha: 8, RSLoRA: true}).Scale() != 4 {
		t.Errorf("scale alpha/r = %g, rsLoRA alpha/√r = %g", a.Spec.Scale(), Spec{R: 4, Alpha: 8, RSLoRA: true}.Scale())
	}
	if _, err := New(Spec{R: 4, Alpha: 8, Targets: []string{"lm_head"}}, tinyConfig(), nil); err == nil {
		t.Error("lm_head must not be a target")
	}
	if _, err := New(Spec{R: 4, Alpha: 8, Targets: []string{"q_proj"}, Layers: []int{3}}, tinyConfig(), nil); err == nil {
		t.Error("layer 3 of a 3-layer model must be refused")
	}
}

func TestDeltaByHand(t *testing.T) {
	a := &Adapter{Spec: Spec{R: 2, Alpha: 4}}
	m := &Module{In: 3, Out: 2, A: []float32{1, 2, 3, 4, 5, 6}, B: []float32{1, 0, 0, 1}}
	a.Modules = []*Module{m}
	// B·A = A when B is the identity; scale 4/2 = 2.
	if got, want := a.Delta(m), []float32{2, 4, 6, 8, 10, 12}; !slices.Equal(got, want) {
		t.Fatalf("delta %v, want %v", got, want)
	}
}

func TestPEFTRoundTrip(t *testing.T) {
	cfg := tinyConfig()
	r := rand.New(rand.NewPCG(3, 4))
	a, err := New(Spec{R: 2, Alpha: 3, Dropout: 0.1, Targets: []string{AllLinear}, Layers: []int{1, 2}, RSLoRA: true}, cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range a.Modules {
		for i := range m.B {
			m.B[i] = r.Float32()
		}
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := peft.Write(dir, a.PEFTConfig("base/dir"), a.PEFTTensors()); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	for k, want := range map[string]any{"peft_type": "LORA", "r": 2.0, "lora_alpha": 3.0, "task_type": "CAUSAL_LM", "bias": "none", "use_rslora": true, "fan_in_fan_out": false, "base_model_name_or_path": "base/dir"} {
		if fields[k] != want {
			t.Errorf("adapter_config.json %s = %v, want %v", k, fields[k], want)
		}
	}
	b, err := FromPEFT(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Modules) != len(a.Modules) || !slices.Equal(b.Spec.Layers, []int{1, 2}) || !b.Spec.RSLoRA || b.Spec.R != 2 {
		t.Fatalf("read back %d modules, spec %+v", len(b.Modules), b.Spec)
	}
	for i, m := range a.Modules {
		if !slices.Equal(m.A, b.Modules[i].A) || !slices.Equal(m.B, b.Modules[i].B) {
			t.Fatalf("%s differs after the round trip", m.Key())
		}
	}
}

func TestFromPEFTErrors(t *testing.T) {
	cfg := tinyConfig()
	a, _ := New(Spec{R: 2, Alpha: 3, Targets: []string{"q_proj"}}, cfg, rand.New(rand.NewPCG(1, 2)))
	good := a.PEFTTensors()
	cases := []struct {
		name    string
		tensors []safetensors.Tensor
		want    string
	}{
		{"unknown key", append(good[:2:2], safetensors.F32("base_model.model.lm_head.lora_A.weight", []int{2, 8}, make([]float32, 16))), "lm_head.lora_A.weight\" is not the LoRA weight of a decoder projection"},
		{"layer beyond the model", []safetensors.Tensor{safetensors.F32("base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight", []int{2, 8}, make([]float32, 16))}, "layer 7, but the model has 3 layers"},
		{"A without B", good[:1], "no tensor base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight, which adapter_config.json selects"},
		{"wrong shape", []safetensors.Tensor{good[0], safetensors.F32(good[1].Name, []int{2, 8}, make([]float32, 16))}, "shape [2 8], expected [8 2]"},
		{"module outside target_modules", append(good[:len(good):len(good)], safetensors.F32("base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight", []int{2, 8}, make([]float32, 16))), "v_proj.lora_A.weight\" is outside what adapter_config.json selects (target_modules [q_proj]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "a")
			if err := peft.Write(dir, a.PEFTConfig("b"), c.tensors); err != nil {
				t.Fatal(err)
			}
			_, err := FromPEFT(dir, cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

// TestWeightsNameEveryTensor: Weights gives PEFT's key and shape of every
// trainable tensor, in the order the optimizer keeps its moments, and views
// the module's own values; "all-linear" alone expands to the seven projections.
func TestWeightsNameEveryTensor(t *testing.T) {
	a, err := New(Spec{R: 2, Alpha: 4, Targets: []string{"down_proj", "k_proj"}, Layers: []int{1}}, tinyConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ws := a.Weights()
	want := []struct {
		key   string
		shape []int
	}{
		{"base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight", []int{2, 8}},
		{"base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight", []int{4, 2}},
		{"base_model.model.model.layers.1.mlp.down_proj.lora_A.weight", []int{2, 12}},
		{"base_model.model.model.layers.1.mlp.down_proj.lora_B.weight", []int{8, 2}},
	}
	if len(ws) != len(want) {
		t.Fatalf("%d weights, want %d", len(ws), len(want))
	}
	for i, w := range want {
		if ws[i].Key != w.key || !slices.Equal(ws[i].Shape, w.shape) || len(ws[i].Value) != w.shape[0]*w.shape[1] {
			t.Errorf("weight %d: %s %v (%d values), want %s %v", i, ws[i].Key, ws[i].Shape, len(ws[i].Value), w.key, w.shape)
		}
	}
	ws[3].Value[0] = 5
	if a.Modules[1].B[0] != 5 {
		t.Error("Weights copies B; the optimizer would update a copy")
	}

	all, err := New(Spec{R: 2, Alpha: 4, Targets: []string{AllLinear}}, tinyConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Modules) != 7*3 || !slices.Equal(all.Spec.Targets, model.Projections()) {
		t.Errorf("all-linear: %d modules, targets %v", len(all.Modules), all.Spec.Targets)
	}
	if _, err := New(Spec{R: 2, Alpha: 4, Targets: []string{AllLinear, "q_proj"}}, tinyConfig(), nil); err == nil {
		t.Error("all-linear beside another target must be refused")
	}
}

// TestDoRAPEFTRoundTrip: a DoRA adapter is written with use_dora: true and
// each module's magnitude under PEFT's key, ...q_proj.lora_magnitude_vector
// of shape [out], and reads back bit for bit.
func TestDoRAPEFTRoundTrip(t *testing.T) {
	cfg := tinyConfig()
	r := rand.New(rand.NewPCG(5, 6))
	a, err := New(Spec{R: 2, Alpha: 3, Targets: []string{"q_proj", "down_proj"}, DoRA: true}, cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range a.Modules {
		for i := range m.B {
			m.B[i] = r.Float32()
		}
		for i := range m.M {
			m.M[i] = 1 + r.Float32()
		}
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := peft.Write(dir, a.PEFTConfig("base"), a.PEFTTensors()); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	if fields["use_dora"] != true {
		t.Fatalf("adapter_config.json use_dora = %v", fields["use_dora"])
	}
	st, err := safetensors.Open(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	info, ok := st.Info("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector")
	st.Close()
	if !ok || !slices.Equal(info.Shape, []int{8}) {
		t.Fatalf("q_proj magnitude: %+v, present %v", info, ok)
	}
	b, err := FromPEFT(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Spec.DoRA || len(b.Weights()) != 3*len(a.Modules) {
		t.Fatalf("read back DoRA %v, %d weights", b.Spec.DoRA, len(b.Weights()))
	}
	for i, w := range a.Weights() {
		if got := b.Weights()[i]; got.Key != w.Key || !slices.Equal(got.Value, w.Value) {
			t.Fatalf("%s differs after the round trip", w.Key)
		}
	}
}

// TestDoRAPEFTErrors: a DoRA file without a magnitude, a magnitude in a LoRA
// file and a magnitude of the wrong size are refused, naming the tensor.
func TestDoRAPEFTErrors(t *testing.T) {
	cfg := tinyConfig()
	dora, _ := New(Spec{R: 2, Alpha: 3, Targets: []string{"q_proj"}, DoRA: true}, cfg, rand.New(rand.NewPCG(1, 2)))
	plain, _ := New(Spec{R: 2, Alpha: 3, Targets: []string{"q_proj"}}, cfg, rand.New(rand.NewPCG(1, 2)))
	key := "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"
	good := dora.PEFTTensors()
	for _, c := range []struct {
		name    string
		a       *Adapter
		tensors []safetensors.Tensor
		want    string
	}{
		{"DoRA without magnitude", dora, good[:2], "no tensor " + key + ", which use_dora: true in adapter_config.json requires"},
		{"magnitude without use_dora", plain, good, key + "\" is a DoRA magnitude, but adapter_config.json has no use_dora: true"},
		{"magnitude of the wrong size", dora, append(good[:2:2], safetensors.F32(key, []int{3}, make([]float32, 3))), "shape [3], expected [8]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "a")
			if err := peft.Write(dir, c.a.PEFTConfig("b"), c.tensors); err != nil {
				t.Fatal(err)
			}
			_, err := FromPEFT(dir, cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

// TestMergeIntoByHand: DoRA's merge on a 2×2 case worked by hand.
func TestMergeIntoByHand(t *testing.T) {
	a := &Adapter{Spec: Spec{R: 1, Alpha: 2, DoRA: true}}
	// W₀ = [[3, 0], [0, 1]]; s = 2, B·A = [[0, 2], [0, 0]]: W₀ + s·B·A = [[3, 4], [0, 1]],
	// row norms 5 and 1; m = (10, 3) scales the rows by 2 and 3.
	m := &Module{In: 2, Out: 2, A: []float32{0, 1}, B: []float32{2, 0}, M: []float32{10, 3}}
	w := []float32{3, 0, 0, 1}
	a.MergeInto(m, w)
	if want := []float32{6, 8, 0, 3}; !slices.Equal(w, want) {
		t.Fatalf("merged %v, want %v", w, want)
	}
}
