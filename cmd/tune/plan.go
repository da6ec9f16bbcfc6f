package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/plan"
)

func newPlanCmd() *cobra.Command {
	var asJSON, noTime bool
	cmd := &cobra.Command{
		Use:   "plan CONFIG [key=value ...]",
		Short: "Say before starting whether a run fits this machine, how long it takes, and what to change if it does not fit",
		Long: `Plans a run of CONFIG on this machine without loading any weight: the machine
(CPU and SIMD, RAM available and the cgroup limit, NVIDIA GPUs, the memory of the
programs already running), the run's peak resident memory part by part (from the
code that sizes its buffers), the time per step and for the whole run (from a short
measurement of one layer and the head at the config's shapes, cached per machine in
the user's cache), and a verdict against what is free beyond
resources.reserve_memory. When the run does not fit, it lists changes that make it
fit, each with its estimate. tune run plans the same way and refuses a run that
does not fit (exit code 2; --force runs it anyway).`,
		Args: configArgs("plan"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(args[0], args[1:])
			if err != nil {
				return err
			}
			p, err := plan.Make(cmd.Context(), cfg, plan.Options{Time: !noTime, CacheDir: plan.CacheDir()})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, p)
			}
			printPlan(out, cfg, args, p)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (peak_bytes, step_s, fits, the parts, the machine, suggestions)")
	cmd.Flags().BoolVar(&noTime, "no-time", false, "skip the time measurement")
	return cmd
}

// printJSON writes v as indented JSON, for --json.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// configArgs requires a CONFIG argument (exit code 2 without).
func configArgs(command string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < 1 {
			return usageError{fmt.Errorf("%s needs a config file: tune %s CONFIG [key=value ...] (tune ls lists the shipped ones)", command, command)}
		}
		return nil
	}
}

// printPlan writes a plan as a table a person reads top to bottom: the
// machine, the estimate by part, the time, the verdict and what to change.
func printPlan(w io.Writer, cfg *configs.Config, args []string, p *plan.Plan) {
	m := p.Machine
	cores := fmt.Sprintf("%d threads", m.Threads)
	if m.Cores > 0 {
		cores = fmt.Sprintf("%d cores, %d threads", m.Cores, m.Threads)
	}
	fmt.Fprintf(w, "machine   %s, %s, %s\n", m.CPU, cores, strings.Join(m.Features, " "))
	limit := ""
	if m.CgroupLimitBytes > 0 {
		limit = fmt.Sprintf(" (cgroup limit %s)", plan.Bytes(m.CgroupLimitBytes))
	}
	from := ""
	if m.AvailableFrom != "" {
		from = " (from " + m.AvailableFrom + ")"
	}
	fmt.Fprintf(w, "memory    %s total%s, %s available%s\n", plan.Bytes(m.TotalBytes), limit, plan.Bytes(m.AvailableBytes), from)
	if len(m.GPUs) == 0 {
		fmt.Fprintf(w, "GPU       %s\n", m.GPUNote)
	}
	for _, g := range m.GPUs {
		fmt.Fprintf(w, "GPU       %s, %s total, %s free (tune trains on the CPU for now)\n", g.Name, plan.Bytes(g.TotalBytes), plan.Bytes(g.FreeBytes))
	}
	var running []string
	for _, g := range m.Groups {
		if len(running) == 6 || g.RSSBytes < 50e6 {
			break
		}
		name := strings.Join(g.Names, ", ")
		if g.Kind != "other" {
			name = g.Kind + " (" + name + ")"
		}
		running = append(running, fmt.Sprintf("%s %s", name, plan.Bytes(g.RSSBytes)))
	}
	if len(running) > 0 {
		fmt.Fprintf(w, "running   %s\n", strings.Join(running, "; "))
	}

	fmt.Fprintf(w, "\nrun of %s: batch %d x %d tokens, grad_accum %d, LoRA r=%d\n", args[0], cfg.Train.BatchSize, cfg.Data.SeqLen, cfg.Train.GradAccum, cfg.LoRA.R)
	for _, part := range p.Memory.Parts {
		fmt.Fprintf(w, "  %-26s %10s  %s\n", part.Name, plan.Bytes(part.Bytes), part.Note)
	}
	fmt.Fprintf(w, "  %-26s %10s  resident at most (GOMEMLIMIT holds the heap to its part)\n", "peak", plan.Bytes(p.Memory.PeakBytes))
	if p.Memory.FirstRunBytes > 0 {
		fmt.Fprintf(w, "  %-26s %10s  the first run, while it generates %s\n", "first-run peak", plan.Bytes(p.Memory.FirstRunBytes), cfg.Model.Path)
	}
	fmt.Fprintf(w, "  %-26s %10s  available %s minus resources.reserve_memory %s\n", "free for the run", plan.Bytes(p.AvailableBytes-p.ReserveBytes), plan.Bytes(p.AvailableBytes), plan.Bytes(p.ReserveBytes))

	if p.Speed != nil {
		how := "measured now"
		if p.Speed.Cached {
			how = "measured earlier on this machine"
		}
		fmt.Fprintf(w, "\ntime      %.2f s a step (%s: a layer %.3f s, the head %.3f s); %d steps: %s", p.StepS, how, p.Speed.LayerS, p.Speed.HeadS, p.Steps, duration(p.TotalS))
		if p.EpochSteps > 0 && p.EpochSteps != p.Steps {
			fmt.Fprintf(w, ", %s an epoch", duration(p.StepS*float64(p.EpochSteps)))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\nverdict   %s\n", p.Verdict)
	if len(p.Suggestions) > 0 {
		fmt.Fprintln(w, "\nto fit, any one of:")
		for _, s := range p.Suggestions {
			t := ""
			if s.StepS > 0 {
				t = fmt.Sprintf(", %.2f s a step", s.StepS)
			}
			fmt.Fprintf(w, "  %s: peak %s%s\n", s.Change, plan.Bytes(s.PeakBytes), t)
			if len(s.Overrides) > 0 {
				fmt.Fprintf(w, "    tune run %s %s\n", strings.Join(quoteAll(args), " "), strings.Join(quoteAll(s.Overrides), " "))
			}
		}
	} else if !p.Fits && len(p.Close) == 0 {
		fmt.Fprintln(w, "no change tune knows of makes it fit: a machine with more memory is needed")
	}
	for _, tip := range p.Tips {
		fmt.Fprintf(w, "tip       %s\n", tip)
	}
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellQuote(a)
	}
	return out
}

// duration writes seconds as a person reads them: 45s, 12m 5s, 3h 20m, 2d 4h.
func duration(s float64) string {
	d := time.Duration(s * float64(time.Second)).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}
