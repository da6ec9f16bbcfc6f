package export

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tune-dev/tune/checkpoints"
	"github.com/tune-dev/tune/checkpoints/gguf"
	"github.com/tune-dev/tune/checkpoints/hf"
	"github.com/tune-dev/tune/checkpoints/safetensors"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/tokenizer"
)

// DefaultShardBytes is the shard size limit of merged safetensors, as
// transformers' save_pretrained uses.
const DefaultShardBytes = 5 << 30

// tokenizerFiles are copied next to merged weights so the directory is a
// complete model for transformers, vLLM and tune.
var tokenizerFiles = []string{"generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja"}

// Merged writes the model in baseDir with the PEFT adapter in adapterDir
// merged into it (W + scale·B·A, added in float32 and rounded once) as a
// Hugging Face directory: safetensors in outType ("" keeps each tensor's
// stored dtype; else f32, f16 or bf16), sharded at maxShardBytes with a
// model.safetensors.index.json when it takes more than one file, config.json
// and the tokenizer files. Tensors are produced one at a time while the files
// are written, so memory stays near one tensor. The directory appears whole
// or not at all.
func Merged(baseDir, adapterDir, outDir, outType string, maxShardBytes int64) error {
	// model.Open checks every tensor the architecture needs is there with
	// the right shape and a float dtype; it maps, it does not copy.
	m, md, err := model.Open(baseDir)
	if err != nil {
		return err
	}
	defer md.Close()
	cfg := m.Config
	var adapter *lora.Adapter
	if adapterDir != "" {
		if adapter, err = lora.FromPEFT(adapterDir, cfg); err != nil {
			return err
		}
	}
	var want dtype.DType
	if outType != "" {
		t, err := ParseType(outType)
		if err != nil || t.DType().Quantized() {
			return fmt.Errorf("merged dtype %q: expected f32, f16 or bf16", outType)
		}
		want = map[gguf.Type]dtype.DType{gguf.F32: dtype.F32, gguf.F16: dtype.F16, gguf.BF16: dtype.BF16}[t]
	}

	// Lay the tensors out in shards of at most maxShardBytes.
	type planned struct {
		spec   safetensors.Tensor // name, dtype, shape
		module *lora.Module
	}
	var shards [][]planned
	var size, total int64
	for _, name := range md.Names() {
		info, _ := md.Info(name)
		dt := info.DType
		if want != "" {
			dt = want
		}
		p := planned{spec: safetensors.Tensor{Name: name, DType: dt, Shape: info.Shape}}
		if adapter != nil {
			p.module = moduleOf(adapter, name)
		}
		n := int64(p.spec.NumElements()) * int64(dt.Size())
		if len(shards) == 0 || (size > 0 && size+n > maxShardBytes) {
			shards = append(shards, nil)
			size = 0
		}
		shards[len(shards)-1] = append(shards[len(shards)-1], p)
		size += n
		total += n
	}

	return checkpoints.WriteDirAtomic(outDir, func(tmp string) error {
		weightMap := map[string]string{}
		for k, shard := range shards {
			file := hf.SingleSafetensorsFile
			if len(shards) > 1 {
				file = hf.ShardFile(k, len(shards))
			}
			specs := make([]safetensors.Tensor, len(shard))
			for i, p := range shard {
				specs[i] = p.spec
				weightMap[p.spec.Name] = file
			}
			err := safetensors.WriteFunc(filepath.Join(tmp, file), specs, map[string]string{"format": "pt"}, func(i int) ([]byte, error) {
				out, err := storedType(shard[i].spec.DType)
				if err != nil {
					return nil, err
				}
				return convertTensor(md, shard[i].spec.Name, out, adapter, shard[i].module, 0)
			})
			if err != nil {
				return err
			}
		}
		if len(shards) > 1 {
			index, err := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap}, "", "  ")
			if err != nil {
				return err
			}
			if err := writeFile(filepath.Join(tmp, hf.SafetensorsIndexFile), append(index, '\n')); err != nil {
				return err
			}
		}
		if err := writeConfig(md.ConfigJSON(), outType, filepath.Join(tmp, hf.ConfigFile)); err != nil {
			return err
		}
		if model.IsGGUF(baseDir) {
			return writeGGUFTokenizer(baseDir, tmp)
		}
		for _, f := range tokenizerFiles {
			if err := copyFile(filepath.Join(baseDir, f), filepath.Join(tmp, f)); err != nil && !os.IsNotExist(err) {
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

// writeConfig copies config.json, with torch_dtype set when the dtype changes.
func writeConfig(raw []byte, dtype, path string) error {
	if dtype != "" {
		var c map[string]any
		if err := json.Unmarshal(raw, &c); err != nil {
			return fmt.Errorf("config.json: %w", err)
		}
		c["torch_dtype"] = map[string]string{"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[strings.ToLower(dtype)]
		b, err := json.MarshalIndent(c, "", "  ")
		if err != nil {
			return err
		}
		raw = append(b, '\n')
	}
	return writeFile(path, raw)
}

func writeFile(path string, b []byte) error {
	return checkpoints.WriteFileAtomic(path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
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

// writeGGUFTokenizer writes a GGUF base's tokenizer as tokenizer.json and
// tokenizer_config.json into dir.
func writeGGUFTokenizer(path, dir string) error {
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tj, tc, err := tokenizer.GGUFFiles(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := writeFile(filepath.Join(dir, "tokenizer.json"), tj); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "tokenizer_config.json"), tc)
}
