package main

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/datasets"
	"github.com/tune-dev/tune/kernels"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/train"
)

func newEvalCmd() *cobra.Command {
	var modelDir, data, format, adapterDir string
	var batch, seq int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "eval [CONFIG [key=value ...]] [--model DIR] [--data FILE] [--adapter DIR]",
		Short: "Mean next-token loss and perplexity of a model (and adapter) on a dataset",
		Long: `Evaluates a model on a dataset, read as tune run reads it.

With CONFIG (a file or a name from tune ls): the config's model and data, with
its format, fields, template and seq_len; the validation set when the config has
one (data.val or data.val_ratio), else the training data. --model, --data,
--format and --seq replace the config's values.

Without: --model DIR and --data FILE (JSONL, JSON, Parquet, text); --format
pretokenized ({"input_ids": [...], "labels": [...]}, -100 = not scored), text,
instruction or chat (templated with the model's tokenizer, prompts masked), found
from the first record when not given. Long examples are split into windows.

Examples are packed into rows of --seq tokens; attention never crosses two of
them. With --adapter, base and base + adapter side by side.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if batch <= 0 {
				return usageError{fmt.Errorf("--batch %d: expected a positive number", batch)}
			}
			cfg, err := evalConfig(cmd, args, modelDir, data, format, seq)
			if err != nil {
				return err
			}
			dir, err := train.ModelDir(cfg)
			if err != nil {
				return err
			}
			base, md, err := model.OpenFinite(dir)
			if err != nil {
				return err
			}
			defer md.Close()
			maxPos := base.Config.MaxPositions
			switch {
			case cfg.Data.SeqLen <= maxPos:
			case cmd.Flags().Changed("seq"):
				return usageError{fmt.Errorf("--seq %d exceeds the model's max_position_embeddings %d", cfg.Data.SeqLen, maxPos)}
			case len(args) > 0:
				return cfg.Errorf("data.seq_len", "%d exceeds the model's max_position_embeddings %d", cfg.Data.SeqLen, maxPos)
			default: // --seq's default, for a short model
				cfg.Data.SeqLen = maxPos
			}
			seq := cfg.Data.SeqLen
			d, err := train.OpenData(cmd.Context(), cfg, dir, base.Config.Vocab)
			if err != nil {
				return err
			}
			defer d.Close()
			set := d.Train
			if d.Val != nil && len(args) > 0 {
				set = d.Val
			}
			pool := kernels.NewPool(cfg.Train.Threads)
			defer pool.Close()
			evaluate := func(a model.Adapter) (train.EvalResult, error) {
				return train.EvaluateDataset(cmd.Context(), base, pool, set, 0, batch, seq, a)
			}
			res, err := evaluate(nil)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if adapterDir == "" {
				if asJSON {
					return json.NewEncoder(out).Encode(res)
				}
				fmt.Fprintf(out, "loss %.6f  perplexity %.4f  (%d tokens predicted, %d examples, %d rows of %d)\n",
					res.Loss, res.Perplexity, res.Tokens, res.Examples, res.Rows, seq)
				return nil
			}
			a, err := lora.FromPEFT(adapterDir, base.Config)
			if err != nil {
				return err
			}
			warnBase(cmd, a.BaseModel, dir)
			withAdapter, err := evaluate(a.Attach(false))
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(out).Encode(map[string]train.EvalResult{"base": res, "adapter": withAdapter})
			}
			fmt.Fprintf(out, "%-16s %10s %12s\n", "", "loss", "perplexity")
			fmt.Fprintf(out, "%-16s %10.6f %12.4f\n", "base", res.Loss, res.Perplexity)
			fmt.Fprintf(out, "%-16s %10.6f %12.4f\n", "base + adapter", withAdapter.Loss, withAdapter.Perplexity)
			fmt.Fprintf(out, "(%d tokens predicted, %d examples)\n", res.Tokens, res.Examples)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelDir, "model", "", "Hugging Face model directory or GGUF file")
	f.StringVar(&data, "data", "", "dataset file (JSONL, JSON, Parquet or text)")
	f.StringVar(&format, "format", "", "pretokenized, text, instruction or chat (default: the config's, or found from the first record)")
	f.StringVar(&adapterDir, "adapter", "", "PEFT adapter: print base and base + adapter side by side")
	f.IntVar(&batch, "batch", 4, "rows per forward pass")
	f.IntVar(&seq, "seq", 512, "tokens per row (default: the config's data.seq_len)")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// evalConfig is the configuration eval reads data with: the config given,
// or one made from the flags, and the flags the user set on top.
func evalConfig(cmd *cobra.Command, args []string, modelDir, data, format string, seq int) (*configs.Config, error) {
	set := cmd.Flags().Changed
	var over []string
	if modelDir != "" {
		over = append(over, "model.path="+modelDir)
	}
	if data != "" {
		over = append(over, "data.train="+data, "data.sources=", "data.val=", "data.val_ratio=0")
	}
	if format != "" {
		over = append(over, "data.format="+format)
	}
	if set("seq") {
		if seq <= 0 {
			return nil, usageError{fmt.Errorf("--seq %d: expected a positive number", seq)}
		}
		over = append(over, "data.seq_len="+strconv.Itoa(seq))
	}
	if len(args) > 0 {
		return loadConfig(args[0], append(args[1:], over...))
	}
	if modelDir == "" || data == "" {
		return nil, usageError{fmt.Errorf("eval needs a CONFIG, or --model DIR and --data FILE")}
	}
	if format == "" {
		f, err := datasets.DetectFormat(data)
		if err != nil {
			return nil, err
		}
		over = append(over, "data.format="+f)
	}
	if !set("seq") {
		over = append(over, "data.seq_len="+strconv.Itoa(seq))
	}
	// The data settings of a run, so eval reads files as training does.
	return loadConfig("", append(over, "data.truncation=split", "data.shuffle=false", "train.seed=0"))
}
