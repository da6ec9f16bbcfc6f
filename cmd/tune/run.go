package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/export"
	"github.com/tune-dev/tune/plan"
	"github.com/tune-dev/tune/train"
)

// loadConfig reads a config with overrides: a file, or when no file has that
// name, a shipped config by the name tune ls prints. Its errors are usage
// errors (exit 2).
func loadConfig(path string, overrides []string) (*configs.Config, error) {
	var cfg *configs.Config
	var err error
	if sc, ok := configs.ShippedNamed(path); ok && !fileExists(path) {
		cfg, err = configs.LoadShipped(sc, overrides)
	} else {
		cfg, err = configs.Load(path, overrides)
	}
	if err != nil {
		return nil, usageError{err}
	}
	return cfg, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// splitResume finds the value of a bare --resume among the arguments. Its
// value is optional, so cobra takes `--resume DIR` (or `--resume latest`)
// as the flag alone and DIR as an argument, wherever it stood; the value is
// "latest" or a step directory, the config a file or a shipped config's name.
func splitResume(resume string, args []string) (string, []string) {
	if resume != "latest" {
		return resume, args
	}
	var bare []int // arguments that are not key=value overrides
	for i, a := range args {
		if !strings.Contains(a, "=") {
			bare = append(bare, i)
		}
	}
	if len(bare) != 2 {
		return resume, args
	}
	for _, i := range bare {
		if st, err := os.Stat(args[i]); args[i] == "latest" || (err == nil && st.IsDir()) {
			return args[i], append(args[:i:i], args[i+1:]...)
		}
	}
	return resume, args
}

func newRunCmd() *cobra.Command {
	var resume string
	var quiet, force bool
	cmd := &cobra.Command{
		Use:   "run CONFIG [key=value ...] [--resume [DIR]]",
		Short: "Train a LoRA adapter as a YAML config says",
		Long: `Trains a LoRA adapter. CONFIG is a YAML file or the name of a config that
comes with tune (tune ls). Values of the config can be overridden on the command
line, torchtune style: tune run demo train.lr=1e-3 lora.r=16

Writes to output.dir: metrics.jsonl, loss.png, checkpoints/step-N (adapter,
optimizer and data cursor; resumable) and adapter/ (a PEFT adapter).
Ctrl-C finishes the current step, writes a checkpoint and exits; a second
Ctrl-C exits at once. --resume continues from the latest checkpoint (or the
one named) exactly as if the run had not stopped.

Before reading any weight, run plans the run as tune plan does and refuses one
that would not fit beside what is running, keeping resources.reserve_memory free
(exit code 2, with the plan and changes that fit); its Go heap is then held to
the plan (GOMEMLIMIT). While it trains, when other programs leave less than
the reserve available, it finishes the step, writes a checkpoint and stops
(exit code 0), saying how to resume. --force runs without either guard.
resources.nice lowers its CPU priority.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return usageError{errors.New("run needs a config file: tune run CONFIG [key=value ...] (tune ls lists the shipped ones)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			resume, args = splitResume(resume, args)
			cfg, err := loadConfig(args[0], args[1:])
			if err != nil {
				return err
			}
			opt := train.Options{Resume: resume, Log: cmd.ErrOrStderr(), Progress: cmd.ErrOrStderr()}
			if quiet {
				opt.Progress = nil
			}
			guard(cmd, cfg, args, force, &opt)
			res, err := train.Run(cmd.Context(), cfg, opt)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case res.Interrupted && res.Checkpoint == "":
				fmt.Fprintln(out, "stopped before training: nothing was saved")
				return nil
			case res.Interrupted && res.Stopped != "":
				fmt.Fprintf(out, "stopped after step %d: %s\ncheckpoint %s\nresume with: %s\n", res.Step, res.Stopped, res.Checkpoint, resumeCommand(args))
				return nil
			case res.Interrupted:
				fmt.Fprintf(out, "stopped after step %d; checkpoint %s\nresume with: %s\n", res.Step, res.Checkpoint, resumeCommand(args))
				return nil
			case res.Steps == 0:
				fmt.Fprintf(out, "nothing to train: the run already completed its %d steps\nadapter: %s\n", res.Step, res.AdapterDir)
				return nil
			}
			fmt.Fprintf(out, "trained %d steps: loss %.4f -> %.4f\nadapter: %s\nmetrics: %s\n",
				res.Steps, res.FirstLoss, res.LastLoss, res.AdapterDir, filepath.Join(cfg.Output.Dir, "metrics.jsonl"))
			if cfg.Output.Merged {
				merged := filepath.Join(cfg.Output.Dir, "merged")
				if err := export.Merged(res.ModelDir, res.AdapterDir, merged, "", export.DefaultShardBytes); err != nil {
					return err
				}
				fmt.Fprintf(out, "merged: %s\n", merged)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&resume, "resume", "", "continue from the latest checkpoint (--resume latest) or a step directory")
	cmd.Flags().Lookup("resume").NoOptDefVal = "latest"
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	cmd.Flags().BoolVar(&force, "force", false, "run even when the plan says it will not fit, and do not stop when memory runs low")
	return cmd
}

// guard plans the run once the data are read, before any weight is: a run
// that will not fit is refused with the plan (exit code 2), and the heap is
// held to the plan. While training, a watch stops the run cleanly when the
// memory available to the rest of the machine falls under the reserve.
// With force, the plan is still printed when the run does not fit, and
// nothing is refused or stopped.
func guard(cmd *cobra.Command, cfg *configs.Config, args []string, force bool, opt *train.Options) {
	var reserve atomic.Int64 // set by BeforeWeights, read by the watch
	opt.BeforeWeights = func(ctx context.Context, steps int) (int64, error) {
		base := plan.ResidentNow()
		p, err := plan.Make(ctx, cfg, plan.Options{Base: base, Data: plan.DataFacts{Steps: steps}})
		if err != nil {
			return 0, err
		}
		if !p.Fits {
			printPlan(cmd.ErrOrStderr(), cfg, args, p)
			if !force {
				return 0, usageError{fmt.Errorf("not started: %s (--force runs it anyway)", p.Verdict)}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s; running anyway (--force)\n", p.Verdict)
			return 0, nil
		}
		reserve.Store(p.ReserveBytes)
		return p.Memory.MemoryLimit(base), nil
	}
	if force {
		return
	}
	ctx := cmd.Context()
	opt.Watch = func() string {
		r := reserve.Load()
		if r == 0 {
			return "" // not planned yet
		}
		avail, err := plan.Available(ctx)
		if err != nil || avail >= r {
			return ""
		}
		return fmt.Sprintf("the memory available to other programs fell to %s, under resources.reserve_memory (%s): tune stopped before the system would have to kill something", plan.Bytes(avail), plan.Bytes(r))
	}
}

func newValidateCmd() *cobra.Command {
	var show bool
	cmd := &cobra.Command{
		Use:   "validate CONFIG [key=value ...]",
		Short: "Check a config and the files it names, as far as can be without training; --show prints the effective config",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return usageError{errors.New("validate needs a config file")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(args[0], args[1:])
			if err != nil {
				return err
			}
			if err := train.CheckConfig(cfg); err != nil {
				return err
			}
			if show {
				b, err := configs.Dump(cfg)
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&show, "show", false, "print the config with defaults and overrides applied")
	return cmd
}

func newLsCmd() *cobra.Command {
	var show string
	cmd := &cobra.Command{
		Use:   "ls [--show NAME]",
		Short: "List the configs that come with tune; tune run NAME trains with one, --show NAME prints it",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if show != "" {
				c, ok := configs.ShippedNamed(show)
				if !ok {
					return usageError{fmt.Errorf("--show %q: no such config (tune ls lists them)", show)}
				}
				_, err := out.Write(c.YAML)
				return err
			}
			for _, c := range configs.Shipped() {
				fmt.Fprintf(out, "%-20s %s\n", c.Name, c.Summary)
			}
			fmt.Fprintln(out, "\ntune run NAME trains with one (from any directory); tune ls --show NAME > my.yaml makes a copy to edit.")
			return nil
		},
	}
	cmd.Flags().StringVar(&show, "show", "", "print a config, to copy and edit")
	return cmd
}

// resumeCommand is the command that continues a stopped run: the config and
// overrides it was given, with --resume.
func resumeCommand(args []string) string {
	parts := []string{"tune", "run"}
	for _, a := range args {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(append(parts, "--resume"), " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
