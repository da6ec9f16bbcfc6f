package model

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/tune-dev/tune/checkpoints/gguf"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/kernels"
)

// tinyGGUF is a 1-layer llama-arch model (hidden 8, 2 heads of 4, 1 KV
// head, vocab 10) whose every value is its index within the tensor, so that
// a moved row shows. extra metadata is appended; drop names tensors left out.
func tinyGGUF(t testing.TB, arch string, extra []KVOrTensor, drop ...string) []byte {
	t.Helper()
	kv := []gguf.KV{
		{Key: "general.architecture", Value: arch},
		{Key: arch + ".block_count", Value: uint32(1)},
		{Key: arch + ".embedding_length", Value: uint32(8)},
		{Key: arch + ".feed_forward_length", Value: uint32(16)},
		{Key: arch + ".attention.head_count", Value: uint32(2)},
		{Key: arch + ".attention.head_count_kv", Value: uint32(1)},
		{Key: arch + ".attention.layer_norm_rms_epsilon", Value: float32(1e-5)},
		{Key: arch + ".rope.freq_base", Value: float32(500000)},
		{Key: arch + ".context_length", Value: uint32(64)},
	}
	shapes := map[string][]uint64{
		"token_embd.weight": {8, 10}, "output_norm.weight": {8},
		"blk.0.attn_norm.weight": {8}, "blk.0.ffn_norm.weight": {8},
		"blk.0.attn_q.weight": {8, 8}, "blk.0.attn_k.weight": {8, 4}, "blk.0.attn_v.weight": {8, 4}, "blk.0.attn_output.weight": {8, 8},
		"blk.0.ffn_gate.weight": {8, 16}, "blk.0.ffn_up.weight": {8, 16}, "blk.0.ffn_down.weight": {16, 8},
	}
	if arch == "qwen2" {
		shapes["blk.0.attn_q.bias"], shapes["blk.0.attn_k.bias"], shapes["blk.0.attn_v.bias"] = []uint64{8}, []uint64{4}, []uint64{4}
	}
	if arch == "qwen3" {
		shapes["blk.0.attn_q_norm.weight"], shapes["blk.0.attn_k_norm.weight"] = []uint64{4}, []uint64{4}
	}
	var tensors []gguf.Tensor
	values := map[string][]float32{}
	for _, e := range extra {
		if e.KV != nil {
			kv = slices.DeleteFunc(kv, func(x gguf.KV) bool { return x.Key == e.KV.Key })
			kv = append(kv, *e.KV)
		} else {
			shapes[e.Name] = e.Dims
			if e.Values != nil {
				values[e.Name] = e.Values
			}
		}
	}
	names := make([]string, 0, len(shapes))
	for n := range shapes {
		if !slices.Contains(drop, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		dims := shapes[n]
		count := 1
		for _, d := range dims {
			count *= int(d)
		}
		v := make([]float32, count)
		for i := range v {
			v[i] = float32(i)
		}
		if vals, ok := values[n]; ok {
			v = vals
		}
		b, _ := gguf.Encode(gguf.F32, v)
		tensors = append(tensors, gguf.Tensor{Name: n, Dims: dims, Type: gguf.F32, Data: func() ([]byte, error) { return b, nil }})
	}
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

// KVOrTensor is extra metadata or an extra (or replaced) tensor: its shape
// and values (nil: 0, 1, 2, ...).
type KVOrTensor struct {
	KV     *gguf.KV
	Name   string
	Dims   []uint64
	Values []float32
}

func kvOf(key string, v any) KVOrTensor { return KVOrTensor{KV: &gguf.KV{Key: key, Value: v}} }

func writeFile(t testing.TB, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOpenGGUF: the configuration comes from the metadata as llama.cpp reads
// it; tensors are views into the mapping in PyTorch's shape, but q and k of
// the llama architecture, whose rows are copied back into Hugging Face's
// order (per head: interleaved pairs -> halves).
func TestOpenGGUF(t *testing.T) {
	path := writeFile(t, tinyGGUF(t, "llama", nil))
	m, ck, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	want := Config{ModelType: "llama", Hidden: 8, Intermediate: 16, Layers: 1, Heads: 2, KVHeads: 1, HeadDim: 4, Vocab: 10,
		MaxPositions: 64, RMSNormEps: 1e-5, RopeTheta: 500000, TieEmbeddings: true, TorchDtype: "float32"}
	if m.Config != want {
		t.Fatalf("config\n got %+v\nwant %+v", m.Config, want)
	}
	g := ck.(*ggufFile)
	mapping := g.f.TensorData
	for _, name := range ck.Names() {
		tn, err := ck.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		gname, _, _ := gguf.TensorName(name)
		raw, _ := mapping(gname)
		view := unsafe.SliceData(tn.Data) == unsafe.SliceData(raw)
		permuted := strings.Contains(name, "q_proj") || strings.Contains(name, "k_proj")
		if view == permuted {
			t.Errorf("%s: a view into the file %v, want %v", name, view, !permuted)
		}
	}
	// k: 1 head of 4 rows of 8; GGUF rows [r0 r1 r2 r3] hold HF rows
	// [h0 h2 h1 h3], so HF row 1 is GGUF row 2.
	k, _ := ck.Tensor("model.layers.0.self_attn.k_proj.weight")
	if !slices.Equal(k.Shape, []int{4, 8}) || k.DType != dtype.F32 {
		t.Fatalf("k: shape %v dtype %s", k.Shape, k.DType)
	}
	v, _ := dtype.Decode(dtype.F32, k.Data)
	for hfRow, ggufRow := range []int{0, 2, 1, 3} {
		if v[hfRow*8] != float32(ggufRow*8) {
			t.Errorf("k row %d starts with %g, want GGUF row %d", hfRow, v[hfRow*8], ggufRow)
		}
	}
	// qwen2 rotates halves as Hugging Face does: nothing is copied.
	qpath := writeFile(t, tinyGGUF(t, "qwen2", nil))
	_, qck, err := Open(qpath)
	if err != nil {
		t.Fatal(err)
	}
	defer qck.Close()
	q, _ := qck.Tensor("model.layers.0.self_attn.q_proj.weight")
	raw, _ := qck.(*ggufFile).f.TensorData("blk.0.attn_q.weight")
	if unsafe.SliceData(q.Data) != unsafe.SliceData(raw) {
		t.Error("qwen2 q is a copy")
	}
}

// TestGGUFConfigErrors: metadata tune cannot build from is one line naming
// the GGUF key.
func TestGGUFConfigErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		arch  string
		extra []KVOrTensor
		drop  []string
		want  string
	}{
		{"architecture", "gemma", nil, nil, `general.architecture: "gemma" is not supported`},
		{"heads", "llama", []KVOrTensor{kvOf("llama.attention.head_count_kv", uint32(3))}, nil, "llama.attention.head_count_kv: 3 does not divide num_attention_heads 2"},
		{"no embedding", "llama", nil, []string{"token_embd.weight"}, "tensor token_embd.weight: missing or not a matrix"},
		{"no hidden size", "qwen3", nil, nil, ""},
		{"no layers", "qwen3", []KVOrTensor{kvOf("qwen3.block_count", uint32(0))}, nil, "qwen3.block_count: 0; expected a positive integer"},
		{"value length", "llama", []KVOrTensor{kvOf("llama.attention.value_length", uint32(8))}, nil, "llama.attention.value_length: 8; tune needs it equal to the head size 4"},
		{"partial rotary", "llama", []KVOrTensor{kvOf("llama.rope.dimension_count", uint32(2))}, nil, "llama.rope.dimension_count: 2; tune needs it equal to the head size 4"},
		{"yarn", "llama", []KVOrTensor{kvOf("llama.rope.scaling.type", "yarn")}, nil, `llama.rope.scaling.type: "yarn" is not supported`},
		{"string size", "llama", []KVOrTensor{kvOf("llama.feed_forward_length", "16")}, nil, "llama.feed_forward_length: expected a number, got string"},
		{"nan eps", "llama", []KVOrTensor{kvOf("llama.attention.layer_norm_rms_epsilon", float64(0)/zero)}, nil, "expected a finite number"},
		{"rope_freqs", "llama", []KVOrTensor{{Name: "rope_freqs.weight", Dims: []uint64{2}}}, nil, "tensor rope_freqs.weight: per-frequency factors that no Llama 3 rope_scaling"},
		{"unknown tensor", "llama", []KVOrTensor{{Name: "blk.0.ffn_gate_exps.weight", Dims: []uint64{8}}}, nil, "tensor blk.0.ffn_gate_exps.weight: not a tensor"},
		{"shape", "llama", []KVOrTensor{{Name: "blk.0.attn_v.weight", Dims: []uint64{8, 5}}}, nil, "tensor blk.0.attn_v.weight (model.layers.0.self_attn.v_proj.weight): shape [5 8], but the configuration implies [4 8]"},
		{"missing q norm", "qwen3", nil, []string{"blk.0.attn_q_norm.weight"}, "no tensor blk.0.attn_q_norm.weight (model.layers.0.self_attn.q_norm.weight)"},
	} {
		if c.want == "" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			b := tinyGGUF(t, c.arch, c.extra, c.drop...)
			_, _, err := Open(writeFile(t, b))
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line with %q", err, c.want)
			}
		})
	}
}

var zero float64

// FuzzOpenGGUF feeds arbitrary files to Open's GGUF path: the configuration
// from metadata, the name mapping, the q/k unpermutation and Load. It must
// never panic; an error is one line. Seeds: tiny llama, qwen2 and qwen3
// models and testdata/fuzz/FuzzOpenGGUF.
func FuzzOpenGGUF(f *testing.F) {
	for _, arch := range []string{"llama", "qwen2", "qwen3"} {
		f.Add(tinyGGUF(f, arch, nil))
	}
	f.Add(tinyGGUF(f, "llama", []KVOrTensor{kvOf("llama.rope.scaling.type", "linear"), kvOf("llama.rope.scaling.factor", float32(4)), {Name: "blk.0.attn_q.bias", Dims: []uint64{8}}, {Name: "blk.0.attn_k.bias", Dims: []uint64{4}}, {Name: "blk.0.attn_v.bias", Dims: []uint64{4}}, {Name: "blk.0.attn_output.bias", Dims: []uint64{8}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "f.gguf")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		m, ck, err := Open(p)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		defer ck.Close()
		for _, name := range ck.Names() {
			if _, err := ck.Tensor(name); err != nil {
				t.Fatalf("listed tensor %s: %v", name, err)
			}
		}
		if m.Config.Layers != len(m.Layers) {
			t.Fatalf("%d layers for a configuration of %d", len(m.Layers), m.Config.Layers)
		}
	})
}

// TestGGUFLlama3Rope: the rope_freqs tensor convert_hf_to_gguf writes for
// Llama 3.1 (factor 8) and 3.2 (factor 32), both with original context
// 8192, is read back as their rope_scaling.
func TestGGUFLlama3Rope(t *testing.T) {
	for _, factor := range []float64{8, 32} {
		c := Config{HeadDim: 4, RopeTheta: 500000, RopeScaling: kernels.RopeScaling{Type: "llama3", Factor: factor, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 8192}}
		// With head size 4 the wavelengths 2π and 2π·500000^½ ≈ 4443 fall
		// in the high- and the smooth band of an 8192 context.
		factors := RopeFreqFactors(c)
		b := tinyGGUF(t, "llama", []KVOrTensor{{Name: "rope_freqs.weight", Dims: []uint64{2}, Values: factors}})
		m, ck, err := Open(writeFile(t, b))
		if err != nil {
			t.Fatal(err)
		}
		ck.Close()
		if m.Config.RopeScaling != c.RopeScaling {
			t.Errorf("factor %g: rope scaling %+v, want %+v", factor, m.Config.RopeScaling, c.RopeScaling)
		}
	}
}
