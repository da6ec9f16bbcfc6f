package main

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/tune-dev/tune/configs"
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
		Use:   "eval --model DIR --data FILE [--format F] [--adapter DIR]",
		Short: "Mean next-token loss and perplexity of a model (and adapter) on a dataset",
		Long: `Evaluates a Hugging Face model directory on a dataset file (JSONL, JSON, Parquet,
text), read as tune run reads data.train: --format pretokenized (records
{"input_ids": [...], "labels": [...]}, -100 = not scored), text, instruction or
chat (templated with the model's tokenizer, prompts masked). Examples are packed
into rows of --seq tokens; attention never crosses two of them, and longer ones
are split into windows. With --adapter, base and base + adapter side by side.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if modelDir == "" || data == "" {
				return usageError{fmt.Errorf("eval needs --model DIR and --data FILE")}
			}
			if batch <= 0 || seq <= 0 {
				return usageError{fmt.Errorf("--batch %d, --seq %d: expected positive numbers", batch, seq)}
			}
			// The data settings of a run, so eval reads files as training does.
			cfg, err := configs.Load("", []string{"model.path=" + modelDir, "data.train=" + data, "data.format=" + format,
				"data.seq_len=" + strconv.Itoa(seq), "data.truncation=split", "data.shuffle=false", "train.seed=0"})
			if err != nil {
				return usageError{err}
			}
			base, md, err := model.OpenFinite(modelDir)
			if err != nil {
				return err
			}
			defer md.Close()
			d, err := train.OpenData(cfg, modelDir, base.Config.Vocab)
			if err != nil {
				return fmt.Errorf("%s: %w", data, err)
			}
			pool := kernels.NewPool(0)
			defer pool.Close()
			evaluate := func(a model.Adapter) (train.EvalResult, error) {
				return train.EvaluateDataset(cmd.Context(), base, pool, d.Train, 0, batch, seq, a)
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
			warnBase(cmd, a.BaseModel, modelDir)
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
	f.StringVar(&modelDir, "model", "", "Hugging Face model directory")
	f.StringVar(&data, "data", "", "dataset file (JSONL, JSON, Parquet or text)")
	f.StringVar(&format, "format", "pretokenized", "pretokenized, text, instruction or chat")
	f.StringVar(&adapterDir, "adapter", "", "PEFT adapter: print base and base + adapter side by side")
	f.IntVar(&batch, "batch", 4, "rows per forward pass")
	f.IntVar(&seq, "seq", 512, "tokens per row")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
