package export

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"

	"github.com/tune-dev/tune/checkpoints/gguf"
	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
)

// GGUFAdapter writes a PEFT LoRA adapter (adapterDir) for the model in
// baseDir as a GGUF LoRA adapter, the format llama.cpp (--lora) and Ollama
// (ADAPTER) load on top of a GGUF of the same base. dtype is f32, f16 or bf16.
//
// It follows convert_lora_to_gguf.py: general.type "adapter", adapter.type
// "lora", adapter.lora.alpha, general.architecture that of the base's GGUF,
// and per module blk.N.<name>.weight.lora_a ([r, in] in PyTorch order) and
// .lora_b ([out, r]), with lora_b rows of q and k permuted for llama-arch
// bases exactly as their weights are. llama.cpp scales by alpha/r, so an
// rsLoRA adapter (scale alpha/√r) is written with alpha·√r.
func GGUFAdapter(adapterDir, baseDir, outPath, dtype string) error {
	typ, err := ParseType(dtype)
	if err != nil {
		return err
	}
	if typ.DType().Quantized() {
		return fmt.Errorf("GGUF adapter type %q: expected f32, f16 or bf16 (llama.cpp adds adapters in full precision)", dtype)
	}
	cfg, err := model.ReadConfig(baseDir)
	if err != nil {
		return err
	}
	arch, err := ggufArch(cfg.ModelType)
	if err != nil {
		return fmt.Errorf("%s: %w", baseDir, err)
	}
	a, err := lora.FromPEFT(adapterDir, cfg)
	if err != nil {
		return err
	}
	if a.Spec.DoRA {
		// llama.cpp adds scale·B·A to a weight; DoRA rescales its rows.
		return fmt.Errorf("%s: use_dora: true: llama.cpp's GGUF adapters cannot express DoRA's magnitudes; export the merged model instead (--format gguf or merged)", filepath.Join(adapterDir, peft.ConfigFile))
	}
	alpha := a.Spec.Alpha
	if a.Spec.RSLoRA {
		alpha *= math.Sqrt(float64(a.Spec.R))
	}
	kv := []gguf.KV{
		{Key: "general.architecture", Value: arch},
		{Key: "general.type", Value: "adapter"},
		{Key: "general.name", Value: filepath.Base(filepath.Clean(adapterDir))},
		{Key: "general.file_type", Value: fileType(typ)},
		{Key: "general.quantization_version", Value: uint32(2)},
		{Key: "adapter.type", Value: "lora"},
		{Key: "adapter.lora.alpha", Value: float32(alpha)},
	}
	var tensors []gguf.Tensor
	r := a.Spec.R
	for _, m := range a.Modules {
		if allZero(m.A) && allZero(m.B) {
			continue // in the spec but not in the file: no effect, nothing to load
		}
		base := fmt.Sprintf("blk.%d.%s.weight", m.Layer, gguf.ModuleName(m.Name))
		tensors = append(tensors,
			gguf.Tensor{Name: base + ".lora_a", Dims: []uint64{uint64(m.In), uint64(r)}, Type: typ,
				Data: func() ([]byte, error) { return gguf.Encode(typ, m.A) }},
			gguf.Tensor{Name: base + ".lora_b", Dims: []uint64{uint64(r), uint64(m.Out)}, Type: typ,
				Data: func() ([]byte, error) {
					b := m.B
					if h := qkHeads(cfg, m.Name); h > 0 && permutesQK(arch) {
						b = gguf.PermuteRows(b, m.Out, h)
					}
					return gguf.Encode(typ, b)
				}})
	}
	if len(tensors) == 0 {
		return fmt.Errorf("%s: the adapter has no non-zero LoRA weights to export", adapterDir)
	}
	if err := gguf.Write(outPath, kv, tensors); err != nil {
		return fmt.Errorf("GGUF adapter: %w", err)
	}
	return nil
}

func allZero(v []float32) bool {
	return !slices.ContainsFunc(v, func(f float32) bool { return f != 0 })
}
