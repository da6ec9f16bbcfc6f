package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/export"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/tokenizer"
)

func newExportCmd() *cobra.Command {
	var baseDir, adapterDir, format, out, dtype string
	var shardGiB float64
	var force bool
	cmd := &cobra.Command{
		Use:   "export [--model BASE] [--adapter DIR] --format FORMAT --out PATH",
		Short: "Write an adapter or merged model for an inference server (PEFT, GGUF, safetensors, Ollama)",
		Long: `Formats:
  peft          adapter_config.json + adapter_model.safetensors (PEFT, vLLM, TGI, LoRAX)
  gguf-adapter  a GGUF LoRA adapter for llama.cpp (--lora) and Ollama (ADAPTER); --dtype f32|f16|bf16
  merged        the base with the adapter merged, a Hugging Face directory; --dtype (default: the base's)
  gguf          the merged model (or the base, without --adapter) as one GGUF; --dtype f32|f16|bf16|q8_0|q4_0|q4_k
  ollama        a directory with base.gguf, adapter.gguf and a Modelfile for ollama create

DIR is a PEFT adapter directory or one of tune's step checkpoints. BASE defaults
to the adapter's base_model_name_or_path. An existing --out file is replaced
only with --force; an existing directory only when it holds an earlier export.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format == "" || out == "" {
				return usageError{fmt.Errorf("export needs --format and --out")}
			}
			dtype = strings.ToLower(dtype)
			if err := checkExportFlags(format, out, dtype, shardGiB, force); err != nil {
				return err
			}
			if adapterDir != "" {
				pc, st, err := peft.Read(adapterDir)
				if err != nil {
					return err
				}
				st.Close()
				if baseDir == "" {
					baseDir = pc.BaseModelNameOrPath
				} else {
					warnBase(cmd, pc.BaseModelNameOrPath, baseDir)
				}
			}
			if baseDir == "" {
				return usageError{fmt.Errorf("export needs --model BASE (or an --adapter that names its base)")}
			}
			needAdapter := func() error {
				if adapterDir == "" {
					return usageError{fmt.Errorf("--format %s needs --adapter DIR", format)}
				}
				return nil
			}
			var err error
			switch format {
			case "peft":
				if err = needAdapter(); err == nil {
					var note string
					if note, err = exportPEFT(baseDir, adapterDir, out); note != "" && err == nil {
						fmt.Fprintln(cmd.ErrOrStderr(), "tune: note:", note)
					}
				}
			case "gguf-adapter":
				if err = needAdapter(); err == nil {
					err = export.GGUFAdapter(adapterDir, baseDir, out, orDefault(dtype, "f32"))
				}
			case "merged":
				err = export.Merged(baseDir, adapterDir, out, dtype, int64(shardGiB*(1<<30)))
			case "gguf":
				var fb []export.Fallback
				fb, err = export.GGUF(baseDir, adapterDir, out, orDefault(dtype, "f16"))
				printFallbacks(cmd.OutOrStdout(), dtype, fb)
			case "ollama":
				var fb []export.Fallback
				fb, err = exportOllama(baseDir, adapterDir, out, orDefault(dtype, "f16"))
				printFallbacks(cmd.OutOrStdout(), dtype, fb)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%s)\n", out, format)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&baseDir, "model", "", "base model directory or GGUF file (default: the adapter's base_model_name_or_path)")
	f.StringVar(&adapterDir, "adapter", "", "PEFT adapter directory or step checkpoint")
	f.StringVar(&format, "format", "", "peft, gguf-adapter, merged, gguf or ollama")
	f.StringVar(&out, "out", "", "output file (gguf, gguf-adapter) or directory")
	f.StringVar(&dtype, "dtype", "", "f32, f16, bf16 (gguf and ollama also q8_0, q4_0, q4_k)")
	f.Float64Var(&shardGiB, "shard-size", float64(export.DefaultShardBytes)/(1<<30), "merged: largest safetensors shard, GiB")
	f.BoolVar(&force, "force", false, "replace an existing --out file")
	return cmd
}

// exportDTypes are the --dtype values each format takes ("" = its default).
var exportDTypes = map[string][]string{
	"peft":         {""},
	"gguf-adapter": {"", "f32", "f16", "bf16"},
	"merged":       {"", "f32", "f16", "bf16"},
	"gguf":         {"", "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k"},
	"ollama":       {"", "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k"},
}

// checkExportFlags refuses what export would otherwise do wrong quietly:
// replace a file the user owns, ignore --dtype, write a shard per tensor.
func checkExportFlags(format, out, dtype string, shardGiB float64, force bool) error {
	dtypes, ok := exportDTypes[format]
	if !ok {
		return usageError{fmt.Errorf("--format %q: expected peft, gguf-adapter, merged, gguf or ollama", format)}
	}
	if !slices.Contains(dtypes, dtype) {
		if format == "peft" {
			return usageError{fmt.Errorf("--dtype %s: --format peft keeps the adapter's float32 weights, as PEFT reads them; drop --dtype", dtype)}
		}
		return usageError{fmt.Errorf("--dtype %q: --format %s takes %s", dtype, format, strings.Join(dtypes[1:], ", "))}
	}
	if !(shardGiB > 0) || math.IsInf(shardGiB, 0) {
		return usageError{fmt.Errorf("--shard-size %g: expected a positive number of GiB", shardGiB)}
	}
	fi, err := os.Stat(out)
	if err != nil {
		return nil // nothing there (or nothing we can see: writing will say)
	}
	writesFile := format == "gguf" || format == "gguf-adapter"
	switch {
	case writesFile && fi.IsDir():
		return usageError{fmt.Errorf("--out %s is a directory; --format %s writes one file", out, format)}
	case !writesFile && !fi.IsDir():
		return usageError{fmt.Errorf("--out %s is a file; --format %s writes a directory", out, format)}
	case writesFile && !force:
		return usageError{fmt.Errorf("--out %s already exists; choose another path, or add --force to replace it", out)}
	case format == "ollama" && !force:
		for _, name := range []string{"base.gguf", "adapter.gguf", "Modelfile"} {
			if _, err := os.Stat(filepath.Join(out, name)); err == nil {
				return usageError{fmt.Errorf("--out %s already holds %s; choose another directory, or add --force to replace it", out, name)}
			}
		}
	}
	return nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// exportPEFT rewrites an adapter (or a step checkpoint) as a bare PEFT
// directory. For a GGUF base, base_model_name_or_path names the model the
// GGUF was converted from, which is what a PEFT user loads; note says when
// that is only the file's display name.
func exportPEFT(baseDir, adapterDir, out string) (note string, err error) {
	base, md, err := model.Open(baseDir)
	if err != nil {
		return "", err
	}
	defer md.Close()
	a, err := lora.FromPEFT(adapterDir, base.Config)
	if err != nil {
		return "", err
	}
	name := baseDir
	if orig, exact := model.OriginalModel(md); orig != "" {
		name = orig
		if !exact {
			note = fmt.Sprintf("base_model_name_or_path is %q, the GGUF's general.name: %s names no Hugging Face repository (general.base_model.0.repo_url); edit adapter_config.json if PEFT should load another", orig, baseDir)
		}
	} else if model.IsGGUF(baseDir) {
		note = fmt.Sprintf("base_model_name_or_path is the GGUF file %s: it names no original model; edit adapter_config.json for PEFT", baseDir)
	}
	return note, peft.Write(out, a.PEFTConfig(name), a.PEFTTensors())
}

// exportOllama writes base.gguf, adapter.gguf and a Modelfile into out; the
// fallbacks are base.gguf's.
func exportOllama(baseDir, adapterDir, out, dtype string) ([]export.Fallback, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	baseGGUF := filepath.Join(out, "base.gguf")
	fb, err := export.GGUF(baseDir, "", baseGGUF, dtype)
	if err != nil {
		return nil, err
	}
	adapterGGUF := ""
	if adapterDir != "" {
		adapterGGUF = filepath.Join(out, "adapter.gguf")
		if err := export.GGUFAdapter(adapterDir, baseDir, adapterGGUF, "f32"); err != nil {
			return nil, err
		}
	}
	tok, err := tokenizer.Load(baseDir)
	if err != nil {
		return nil, err
	}
	return fb, export.Ollama(out, baseGGUF, adapterGGUF, tok.ChatTemplate())
}

// printFallbacks says which matrices a GGUF export could not store as
// --dtype asked (rows not whole blocks of it) and what they are instead,
// one line per type, layers folded: "blk.*.ffn_down.weight".
func printFallbacks(w io.Writer, dtype string, fb []export.Fallback) {
	byType := map[string][]string{}
	var types []string
	for _, f := range fb {
		t := f.Type.String()
		name := layerNumber.ReplaceAllString(f.Tensor, "blk.*.")
		if _, ok := byType[t]; !ok {
			types = append(types, t)
		}
		if !slices.Contains(byType[t], name) {
			byType[t] = append(byType[t], name)
		}
	}
	for _, t := range types {
		n := 0
		for _, f := range fb {
			if f.Type.String() == t {
				n++
			}
		}
		fmt.Fprintf(w, "%d tensors stored as %s, their rows not whole %s blocks: %s\n", n, t, strings.ToUpper(dtype), strings.Join(byType[t], ", "))
	}
}

// layerNumber matches the layer index of a GGUF tensor name.
var layerNumber = regexp.MustCompile(`^blk\.[0-9]+\.`)
