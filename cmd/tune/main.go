package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/kernels"
)

// usageError marks errors in how tune was called (exit code 2).
type usageError struct{ error }

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The first SIGINT/SIGTERM asks for a clean stop (tune run finishes the
	// step and writes a checkpoint); the second one kills at once.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel()
		fmt.Fprintln(os.Stderr, "\ntune: finishing the current step, then saving (Ctrl-C again quits at once)")
		<-sigs
		os.Exit(130)
	}()
	root := newRoot()
	// A panic is a bug in tune, whatever the input: one line and exit code
	// 3, never a stack trace whose exit code 2 reads as a usage error.
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "tune: internal error: %v (a bug in tune; please report it with the command that caused it)\n", r)
			os.Exit(3)
		}
	}()
	if err := root.ExecuteContext(ctx); err != nil {
		msg := err.Error()
		if strings.HasPrefix(msg, "unknown command") {
			// cobra's suggestion comes on more lines; keep one.
			msg = strings.Join(strings.Fields(msg), " ")
			err = usageError{errors.New(msg)}
		}
		fmt.Fprintln(os.Stderr, "tune:", msg)
		var ue usageError
		var fe *configs.FieldError
		if errors.As(err, &ue) || errors.As(err, &fe) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "tune",
		Short:         "LoRA fine-tuning for Llama-family models, in Go",
		SilenceUsage:  true,
		SilenceErrors: true,
		// A TUNE_KERNELS this CPU cannot run stops every command: running
		// other kernels than the ones asked for would mislead a benchmark.
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if _, err := kernels.Variant(); err != nil {
				return usageError{err}
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newRunCmd(), newValidateCmd(), newLsCmd(), newEvalCmd(), newInspectCmd(), newGenerateCmd(), newTokenizeCmd(), newExportCmd(), newDataCmd(), newBenchCmd(), newMergeCmd(), newPlanCmd())
	return root
}

// exactArgs is cobra.ExactArgs with exit code 2.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
