package plan

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/tune-dev/tune/checkpoints/gguf"
	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/model/builtin"
)

// writeQ4GGUF writes spec as a llama GGUF whose matrices are Q4_0 (vectors
// F32), as llama.cpp lays it out, and returns its path and the bytes of its
// q and k matrices (the ones tune copies to undo the row permutation).
func writeQ4GGUF(t *testing.T, spec builtin.Spec) (path string, qk int64) {
	t.Helper()
	kv := []gguf.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "llama.block_count", Value: uint32(spec.Layers)},
		{Key: "llama.embedding_length", Value: uint32(spec.Hidden)},
		{Key: "llama.feed_forward_length", Value: uint32(spec.Intermediate)},
		{Key: "llama.attention.head_count", Value: uint32(spec.Heads)},
		{Key: "llama.attention.head_count_kv", Value: uint32(spec.KVHeads)},
		{Key: "llama.attention.layer_norm_rms_epsilon", Value: float32(1e-5)},
		{Key: "llama.rope.freq_base", Value: float32(spec.RopeTheta)},
		{Key: "llama.context_length", Value: uint32(256)},
	}
	var tensors []gguf.Tensor
	for _, tn := range spec.Tensors() {
		name, _, ok := gguf.TensorName(tn.Name)
		if !ok {
			t.Fatalf("no GGUF name for %s", tn.Name)
		}
		v, err := dtype.Decode(tn.DType, tn.Data)
		if err != nil {
			t.Fatal(err)
		}
		typ := gguf.Q4_0
		if len(tn.Shape) == 1 {
			typ = gguf.F32
		}
		data, err := gguf.Encode(typ, v)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(tn.Name, "q_proj.weight") || strings.HasSuffix(tn.Name, "k_proj.weight") {
			qk += int64(len(data))
		}
		dims := make([]uint64, len(tn.Shape))
		for i, d := range tn.Shape {
			dims[len(dims)-1-i] = uint64(d)
		}
		tensors = append(tensors, gguf.Tensor{Name: name, Dims: dims, Type: typ, Data: func() ([]byte, error) { return data, nil }})
	}
	path = filepath.Join(t.TempDir(), "model.gguf")
	if err := gguf.Write(path, kv, tensors); err != nil {
		t.Fatal(err)
	}
	return path, qk
}

// A quantized GGUF base is planned at its quantized size: the matrices'
// bytes as the file stores them (18 per 32 values for Q4_0), mapped, and the
// q/k matrices that tune unpermutes counted again as copies; the run's
// estimate is far below the same model in bf16.
func TestPlanCountsQuantizedGGUF(t *testing.T) {
	spec := builtin.Spec{Arch: "llama", Hidden: 256, Intermediate: 512, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 1024, RopeTheta: 10000, DType: dtype.F32, Seed: 9}
	path, qk := writeQ4GGUF(t, spec)
	demo, _ := configs.ShippedNamed("demo")
	cfg, err := configs.LoadShipped(demo, []string{"model.path=" + path, "data.train=builtin:counting", "data.format=pretokenized", "output.dir=" + t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	w, err := ReadWeights(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var matrices, vectors int64
	for _, ti := range spec.Infos() {
		n := int64(1)
		for _, d := range ti.Shape {
			n *= int64(d)
		}
		if len(ti.Shape) == 1 {
			vectors += n
		} else {
			matrices += n
		}
	}
	if want := matrices / 32 * 18; w.ByDType[dtype.Q4_0] != want {
		t.Errorf("Q4_0 bytes %d, want %d (18 per 32 values)", w.ByDType[dtype.Q4_0], want)
	}
	if w.DType != dtype.Q4_0 {
		t.Errorf("major dtype %s, want Q4_0", w.DType)
	}
	if w.Unpermuted != qk {
		t.Errorf("unpermuted q/k %d bytes, want %d", w.Unpermuted, qk)
	}
	if want := qk + 4*vectors; w.Copies != want {
		t.Errorf("copies %d bytes, want q/k %d + vectors widened %d", w.Copies, qk, 4*vectors)
	}
}
