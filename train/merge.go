package train

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/tune-dev/tune/checkpoints"
	"github.com/tune-dev/tune/kernels"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
)

// WriteMerged writes base + adapter as a Hugging Face model directory: every
// tensor of the base, with W + scale·B·A on adapted projections, in the base's
// dtype (rounded once, from float32), plus config.json and the tokenizer files.
func WriteMerged(base *Base, a *lora.Adapter, dir string) error {
	return checkpoints.WriteDirAtomic(dir, func(tmp string) error {
		var tensors []checkpoints.Tensor
		for _, name := range base.Dir.Names() {
			t, err := base.Dir.Tensor(name)
			if err != nil {
				return err
			}
			if m := moduleOf(a, name); m != nil {
				if t, err = mergeTensor(t, a.Delta(m)); err != nil {
					return err
				}
			}
			tensors = append(tensors, t)
		}
		if err := checkpoints.WriteSafetensors(filepath.Join(tmp, "model.safetensors"), tensors, map[string]string{"format": "pt"}); err != nil {
			return err
		}
		for _, f := range []string{"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt"} {
			if err := copyFile(filepath.Join(base.Dir.Path, f), filepath.Join(tmp, f)); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
		return nil
	})
}

// moduleOf finds the adapter module whose base weight is the named tensor.
func moduleOf(a *lora.Adapter, tensor string) *lora.Module {
	rest, ok := strings.CutSuffix(tensor, ".weight")
	if !ok {
		return nil
	}
	for _, m := range a.Modules {
		if model.LayerPrefix(m.Layer)+model.ProjectionPath(m.Name) == rest {
			return m
		}
	}
	return nil
}

func mergeTensor(t checkpoints.Tensor, delta []float32) (checkpoints.Tensor, error) {
	dt := map[checkpoints.DType]kernels.DType{checkpoints.F32: kernels.F32, checkpoints.F16: kernels.F16, checkpoints.BF16: kernels.BF16}
	kd, ok := dt[t.DType]
	if !ok || t.NumElements() != len(delta) {
		return t, fmt.Errorf("merge %s: dtype %s, %d values for a delta of %d", t.Name, t.DType, t.NumElements(), len(delta))
	}
	w, err := kernels.NewMatrix(kd, 1, len(delta), t.Data)
	if err != nil {
		return t, err
	}
	v := w.Float32()
	out := checkpoints.Tensor{Name: t.Name, DType: t.DType, Shape: t.Shape, Data: make([]byte, len(t.Data))}
	for i := range delta {
		f := v[i] + delta[i]
		switch kd {
		case kernels.F32:
			binary.LittleEndian.PutUint32(out.Data[4*i:], math.Float32bits(f))
		case kernels.BF16:
			binary.LittleEndian.PutUint16(out.Data[2*i:], kernels.F32ToBF16(f))
		case kernels.F16:
			binary.LittleEndian.PutUint16(out.Data[2*i:], kernels.F32ToF16(f))
		}
	}
	return out, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return checkpoints.WriteFileAtomic(dst, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}
