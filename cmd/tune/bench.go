package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"

	"github.com/tune-dev/tune/train"
)

func newBenchCmd() *cobra.Command {
	var steps int
	var asJSON bool
	var cpuProfile string
	cmd := &cobra.Command{
		Use:   "bench CONFIG [key=value ...]",
		Short: "Time training steps of a config on random tokens",
		Long: `Times --steps training steps (after one warm-up step) of a config: its model,
LoRA, batch, seq_len, threads and activation checkpointing, on random token ids,
so no dataset is needed. Prints tokens/s, the median step time, the peak
resident memory and the kernel variant (TUNE_KERNELS chooses one).
A built-in model (model.path=builtin:NAME) is made once in the user's cache.`,
		Args: configArgs("bench"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(args[0], args[1:])
			if err != nil {
				return err
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return usageError{fmt.Errorf("--cpuprofile: %w", err)}
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			res, err := train.Bench(cmd.Context(), cfg, steps, train.BenchCacheDir())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, res)
			}
			fmt.Fprintf(out, "model        %s\n", res.Model)
			fmt.Fprintf(out, "shape        batch %d x seq %d, grad_accum %d, activation checkpointing %v\n", res.Batch, res.Seq, res.GradAccum, res.Recompute)
			fmt.Fprintf(out, "kernels      %s, %d threads\n", res.Kernels, res.Threads)
			fmt.Fprintf(out, "tokens/s     %.1f (median of %d steps; best %.1f)\n", res.TokensPerS, len(res.StepsS), res.BestTokensS)
			fmt.Fprintf(out, "step         %.3f s\n", res.StepS)
			fmt.Fprintf(out, "peak RSS     %.2f GB\n", float64(res.PeakRSSBytes)/1e9)
			return nil
		},
	}
	cmd.Flags().IntVar(&steps, "steps", 3, "steps to time, after one warm-up step")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run (go tool pprof reads it)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (tokens_per_s, step_s, peak_rss_bytes, kernels, ...)")
	return cmd
}
