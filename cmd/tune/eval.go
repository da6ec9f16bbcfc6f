package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tune-dev/tune/datasets"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/train"
)

func newEvalCmd() *cobra.Command {
	var modelDir, data, adapterDir string
	var batch, seq int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "eval --model DIR --data FILE.jsonl",
		Short: "Mean next-token loss and perplexity of a model on a dataset",
		Long: `Evaluates a Hugging Face model directory on a JSONL file of pre-tokenized
records {"input_ids": [...], "labels": [...] (optional, -100 = not scored)}.
Examples are packed into rows of --seq tokens; attention never crosses two of them.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if modelDir == "" || data == "" {
				return usageError{fmt.Errorf("eval needs --model DIR and --data FILE.jsonl")}
			}
			if batch <= 0 {
				return usageError{fmt.Errorf("--batch %d: expected a positive number", batch)}
			}
			examples, err := datasets.ReadPretokenized(data)
			if err != nil {
				return err
			}
			base, err := train.OpenBase(modelDir)
			if err != nil {
				return err
			}
			defer base.Close()
			if seq <= 0 {
				for _, ex := range examples {
					seq = max(seq, len(ex.IDs))
				}
				seq = min(seq, base.Model.Config.MaxPositions, 2048)
			}
			res, err := train.Evaluate(cmd.Context(), base.Model, examples, batch, seq, nil)
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
			a, err := lora.FromPEFT(adapterDir, base.Model.Config)
			if err != nil {
				return err
			}
			withAdapter, err := train.Evaluate(cmd.Context(), base.Model, examples, batch, seq, a.Attach(false))
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
	cmd.Flags().StringVar(&modelDir, "model", "", "Hugging Face model directory")
	cmd.Flags().StringVar(&data, "data", "", "JSONL file of pre-tokenized records")
	cmd.Flags().StringVar(&adapterDir, "adapter", "", "PEFT adapter: print base and base + adapter side by side")
	cmd.Flags().IntVar(&batch, "batch", 4, "rows per forward pass")
	cmd.Flags().IntVar(&seq, "seq", 0, "tokens per row (default: the longest example, at most 2048)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
