package testmodels

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/tune-dev/tune/checkpoints/gguf"
	"github.com/tune-dev/tune/checkpoints/hf"
	"github.com/tune-dev/tune/checkpoints/safetensors"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/quant"
	"github.com/tune-dev/tune/model"
)

// Requantize writes dst, the GGUF model src with every matrix stored as t
// (ggml's reference quantizer, internal/quant) and the 1-D tensors as F32,
// as llama-quantize leaves norms: a quantized base of any supported type
// from the float GGUF `tune export` writes. Every matrix's rows must be
// whole blocks of t.
func Requantize(src, dst string, t gguf.Type) error {
	f, err := gguf.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	tensors := make([]gguf.Tensor, 0, len(f.Tensors))
	for _, ti := range f.Tensors {
		out := gguf.F32
		if len(ti.Dims) > 1 {
			out = t
		}
		name := ti.Name
		tensors = append(tensors, gguf.Tensor{Name: name, Dims: ti.Dims, Type: out, Data: func() ([]byte, error) {
			v, err := f.Float32(name)
			if err != nil {
				return nil, err
			}
			return gguf.Encode(out, v)
		}})
	}
	return gguf.Write(dst, f.KV, tensors)
}

// Dequantize writes dir, a Hugging Face checkpoint (config.json and one
// float32 model.safetensors) of the GGUF model src as tune reads it: every
// tensor widened with ggml's dequantize_row_* (internal/quant, held bit for
// bit to a numpy transcription of ggml), q/k rows back in HF order. It is
// the same model in float32, for PyTorch's reference to compute on.
func Dequantize(src, dir string) error {
	_, ck, err := model.Open(src)
	if err != nil {
		return err
	}
	defer ck.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, hf.ConfigFile), ck.ConfigJSON(), 0o644); err != nil {
		return err
	}
	var specs []safetensors.Tensor
	for _, name := range ck.Names() {
		info, _ := ck.Info(name)
		specs = append(specs, safetensors.Tensor{Name: name, DType: dtype.F32, Shape: info.Shape})
	}
	return safetensors.WriteFunc(filepath.Join(dir, hf.SingleSafetensorsFile), specs, map[string]string{"format": "pt"}, func(i int) ([]byte, error) {
		t, err := ck.Tensor(specs[i].Name)
		if err != nil {
			return nil, err
		}
		var v []float32
		if t.DType.Quantized() {
			v = make([]float32, t.NumElements())
			quant.Dequantize(t.DType, v, t.Data)
		} else if v, err = dtype.Decode(t.DType, t.Data); err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name, err)
		}
		return dtype.Encode(dtype.F32, v)
	})
}
