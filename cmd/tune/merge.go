package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tune-dev/tune/checkpoints/hf"
	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
)

func newMergeCmd() *cobra.Command {
	var weights, method, out, baseDir string
	var rank int
	var density float64
	cmd := &cobra.Command{
		Use:   "merge ADAPTER... [--weights w1,w2,...] [--method cat|svd|ties] [--r R] [--density D] --out DIR",
		Short: "Combine LoRA adapters of one base model into one PEFT adapter (pooled training)",
		Long: `Merges PEFT LoRA adapters of the same base model into one adapter for the
weighted sum of their updates, Σ wᵢ·scaleᵢ·Bᵢ·Aᵢ, module by module (a module an
adapter lacks counts as zero). Ranks, alphas, rsLoRA and target modules may differ.

Methods:
  svd   the best rank-R approximation of the sum (default; R defaults to the
        largest input rank, so the result loads where the inputs did)
  cat   exact: the factors side by side, rank Σ rᵢ (rank_pattern where it differs)
  ties  TIES-merging: keep each update's top --density share of entries by
        magnitude, elect each entry's sign, average the agreeing ones; then as svd

--weights defaults to the mean update (1/n each) for svd and cat, and to 1 each
for ties, whose disjoint mean already averages. --model names the base model
directory when the adapters name it differently (or to check them against it);
a base_model_name_or_path that is a local directory is checked the same way.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{fmt.Errorf("merge needs at least one ADAPTER directory")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageError{fmt.Errorf("merge needs --out DIR")}
			}
			opt := lora.MergeOptions{Method: method, R: rank, Density: density, Base: baseDir}
			f := cmd.Flags()
			if f.Changed("r") && rank <= 0 {
				return usageError{fmt.Errorf("--r %d: expected a positive rank", rank)}
			}
			if f.Changed("density") && method != lora.MergeTIES {
				return usageError{fmt.Errorf("--density applies to --method ties")}
			}
			if f.Changed("density") && !(density > 0 && density <= 1) {
				return usageError{fmt.Errorf("--density %v: expected a share in (0, 1]", density)}
			}
			if weights != "" {
				for _, s := range strings.Split(weights, ",") {
					w, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
					if err != nil {
						return usageError{fmt.Errorf("--weights: %q is not a number", s)}
					}
					opt.Weights = append(opt.Weights, w)
				}
			}
			if err := opt.Validate(len(args)); err != nil {
				return usageError{err}
			}
			for _, a := range args {
				if same(a, out) {
					return usageError{fmt.Errorf("--out %s is one of the adapters being merged: write the result elsewhere", out)}
				}
			}
			cfg, err := mergeBase(baseDir, args)
			if err != nil {
				return usageError{err}
			}
			opt.Model = cfg
			plan, err := lora.PlanMerge(args, opt)
			if err != nil {
				return usageError{err}
			}
			defer plan.Close()
			rep, err := plan.Write(cmd.Context(), out)
			if err != nil {
				return fmt.Errorf("merge into %s: %w", out, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s merge of %d adapters, %s\n", out, orDefault(method, lora.MergeSVD), len(args), rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&weights, "weights", "", "one weight per adapter, comma-separated (default: see above)")
	f.StringVar(&method, "method", lora.MergeSVD, "svd, cat or ties")
	f.IntVar(&rank, "r", 0, "svd, ties: rank of the result (default: the largest input rank)")
	f.Float64Var(&density, "density", lora.DefaultDensity, "ties: share of each update's entries kept")
	f.StringVar(&out, "out", "", "output PEFT adapter directory")
	f.StringVar(&baseDir, "model", "", "base model directory (default: the adapters' base_model_name_or_path)")
	return cmd
}

// mergeBase is the configuration of the base model when it is at hand:
// --model, or the first adapter's base_model_name_or_path when that is a
// local model directory or GGUF file. Nil when it is not (a hub name, another machine's
// path): the adapters are then checked against each other only.
func mergeBase(baseDir string, adapters []string) (*model.Config, error) {
	if baseDir == "" {
		for _, a := range adapters {
			pc, st, err := peft.Read(a)
			if err != nil {
				return nil, err
			}
			st.Close()
			if name := pc.BaseModelNameOrPath; name != "" {
				if _, err := os.Stat(filepath.Join(name, hf.ConfigFile)); err == nil || model.IsGGUF(name) {
					baseDir = name
				}
				break
			}
		}
	}
	if baseDir == "" {
		return nil, nil
	}
	m, md, err := model.Open(baseDir)
	if err != nil {
		return nil, err
	}
	md.Close()
	return &m.Config, nil
}

// same reports whether two paths name one directory.
func same(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(sa, sb)
	}
	return filepath.Clean(a) == filepath.Clean(b)
}
