package lora

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/checkpoints/safetensors"
)

// writeAdapter writes the weights of an adapter on q_proj and v_proj of every
// layer of tinyConfig with r = 2, under adapter_config.json text cfgJSON.
func writeAdapter(t testing.TB, dir, cfgJSON string) *Adapter {
	t.Helper()
	a, err := New(Spec{R: 2, Alpha: 4, Targets: []string{"q_proj", "v_proj"}}, tinyConfig(), rand.New(rand.NewPCG(3, 4)))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range a.Modules {
		for i := range m.B {
			m.B[i] = float32(i + 1)
		}
	}
	if err := peft.Write(dir, a.PEFTConfig("b"), a.PEFTTensors()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, peft.ConfigFile), []byte(cfgJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestFromPEFTFollowsItsConfig: the adapter goes where adapter_config.json
// says, with PEFT's matching rules, and a config that does not describe the
// weights is refused before anything is allocated from it.
func TestFromPEFTFollowsItsConfig(t *testing.T) {
	const head = `{"peft_type": "LORA", "lora_alpha": 4, `
	cases := []struct {
		name, cfg string
		want      string // error text; "" when it loads
	}{
		{"list", `"r": 2, "target_modules": ["q_proj", "v_proj"]`, ""},
		{"module paths", `"r": 2, "target_modules": ["self_attn.q_proj", "self_attn.v_proj"]`, ""},
		{"regex string", `"r": 2, "target_modules": ".*\\.(q|v)_proj"`, ""},
		{"names absent from this architecture", `"r": 2, "target_modules": ["q_proj", "v_proj", "c_attn"]`, ""},
		{"layers null", `"r": 2, "target_modules": ["q_proj", "v_proj"], "layers_to_transform": null`, ""},
		{"config lies about r", `"r": 100000, "target_modules": ["q_proj", "v_proj"]`, "shape [2 8], expected [100000 8] (r = 100000"},
		{"r beyond any model", `"r": 1000000000, "target_modules": ["q_proj", "v_proj"]`, "r: 1000000000; expected at most"},
		{"weights outside target_modules", `"r": 2, "target_modules": ["q_proj"]`, "v_proj.lora_A.weight\" is outside what adapter_config.json selects"},
		{"weights outside layers_to_transform", `"r": 2, "target_modules": ["q_proj", "v_proj"], "layers_to_transform": [0, 1]`, "layers.2.self_attn.q_proj.lora_A.weight\" is outside"},
		{"layer the model lacks", `"r": 2, "target_modules": ["q_proj", "v_proj"], "layers_to_transform": [5]`, "layers_to_transform: layer 5 does not exist in this 3-layer model"},
		{"targets missing weights", `"r": 2, "target_modules": ["q_proj", "v_proj", "o_proj"]`, "no tensor base_model.model.model.layers.0.self_attn.o_proj.lora_A.weight, which adapter_config.json selects"},
		{"selects nothing", `"r": 2, "target_modules": ["c_attn"]`, "selects no projection of this model"},
		{"regex over some layers", `"r": 2, "target_modules": "model\\.layers\\.0\\..*"`, "selects q_proj in 1 of 3 layers"},
		{"bad regex", `"r": 2, "target_modules": "("`, "not a regular expression"},
		{"rank_pattern giving the file's ranks", `"r": 8, "rank_pattern": {"q_proj": 2, "model.layers.1.self_attn.v_proj": 2, "v_proj": 2}, "alpha_pattern": {"nothing": 1}, "target_modules": ["q_proj", "v_proj"]`, ""},
		{"rank_pattern lying about a rank", `"r": 2, "rank_pattern": {"layers.1.self_attn.v_proj": 4}, "target_modules": ["q_proj", "v_proj"]`, "layers.1.self_attn.v_proj.lora_A.weight has shape [2 8], expected [4 8] (r = 4"},
		{"dropout out of range", `"r": 2, "lora_dropout": 1.5, "target_modules": ["q_proj", "v_proj"]`, "lora_dropout: 1.5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "a")
			want := writeAdapter(t, dir, head+c.cfg+"}")
			a, err := FromPEFT(dir, tinyConfig())
			if c.want != "" {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("error %v, want %q", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Spec.Targets, []string{"q_proj", "v_proj"}) || a.Spec.Layers != nil || len(a.Modules) != 6 {
				t.Fatalf("spec %+v with %d modules, want q_proj and v_proj on all 3 layers", a.Spec, len(a.Modules))
			}
			for i, m := range a.Modules {
				if !slices.Equal(m.B, want.Modules[i].B) || !slices.Equal(m.A, want.Modules[i].A) {
					t.Fatalf("%s: weights differ from the file's", m.Key())
				}
			}
		})
	}
}

// TestFromPEFTLayersToTransform: an adapter on some layers applies there only.
func TestFromPEFTLayersToTransform(t *testing.T) {
	a, _ := New(Spec{R: 2, Alpha: 4, Targets: []string{"k_proj"}, Layers: []int{1}}, tinyConfig(), rand.New(rand.NewPCG(3, 4)))
	dir := filepath.Join(t.TempDir(), "a")
	if err := peft.Write(dir, a.PEFTConfig("b"), a.PEFTTensors()); err != nil {
		t.Fatal(err)
	}
	b, err := FromPEFT(dir, tinyConfig())
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Modules) != 1 || b.Modules[0].Layer != 1 || b.Modules[0].Name != "k_proj" || b.Module(0, "k_proj") != nil {
		t.Fatalf("modules %v, want layer 1's k_proj only", b.Modules)
	}
}

func TestBaseMismatch(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "SmolLM2-135M")
	os.Mkdir(local, 0o755)
	other := filepath.Join(dir, "other")
	os.Mkdir(other, 0o755)
	for _, c := range []struct {
		base, model string
		warn        bool
	}{
		{"", local, false},
		{"HuggingFaceTB/SmolLM2-135M", local, false},
		{local, local + "/", false},
		{local, other, true},
		{"meta-llama/Llama-3.2-1B", local, true},
	} {
		got := BaseMismatch(c.base, c.model)
		if (got != "") != c.warn || (c.warn && !strings.Contains(got, c.base)) {
			t.Errorf("BaseMismatch(%q, %q) = %q, want a warning: %v", c.base, c.model, got, c.warn)
		}
	}
}

// FuzzFromPEFT: whatever adapter_config.json says about fixed weights, FromPEFT
// returns an error or an adapter whose every value came from the file: what it
// allocates is bounded by the weights, never by a number in the config.
// Seeds: testdata/fuzz/FuzzFromPEFT.
func FuzzFromPEFT(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "a")
	writeAdapter(f, dir, "{}")
	st, err := safetensors.Open(filepath.Join(dir, peft.WeightsFile))
	if err != nil {
		f.Fatal(err)
	}
	stored := 0
	for _, ti := range st.Infos() {
		stored += ti.Shape[0] * ti.Shape[1]
	}
	st.Close()
	cfgPath := filepath.Join(dir, peft.ConfigFile)
	f.Fuzz(func(t *testing.T, cfgJSON []byte) {
		if err := os.WriteFile(cfgPath, cfgJSON, 0o644); err != nil {
			t.Fatal(err)
		}
		a, err := FromPEFT(dir, tinyConfig())
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		if a.ParamCount() != stored {
			t.Fatalf("adapter of %d values from a file of %d", a.ParamCount(), stored)
		}
	})
}
