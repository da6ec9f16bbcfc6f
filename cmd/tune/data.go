package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/datasets"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
	"github.com/tune-dev/tune/tokenizer"
	"github.com/tune-dev/tune/train"
)

func newDataCmd() *cobra.Command {
	var show int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "data CONFIG [key=value ...]",
		Short: "Check a config's data: statistics, and the first examples with what trains",
		Long: `Reads the training and validation data of a config as tune run would (every
record parsed and tokenized with the model's tokenizer) and prints statistics:
examples, tokens, truncated and dropped examples, the share of tokens masked
(not trained), bad records skipped, rows per epoch. Then the first --show
examples, the masked tokens [in brackets] (and dim on a terminal), so you see
exactly what the model is trained to produce.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return usageError{errors.New("data needs a config file: tune data CONFIG [key=value ...]")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if show < 0 {
				return usageError{fmt.Errorf("--show %d: expected a number >= 0", show)}
			}
			cfg, err := loadConfig(args[0], args[1:])
			if err != nil {
				return err
			}
			modelDir, vocab, err := dataModel(cfg)
			if err != nil {
				return err
			}
			data, err := train.OpenData(cmd.Context(), cfg, modelDir, vocab)
			if err != nil {
				return err
			}
			defer data.Close()
			l, err := data.Train.Loader(datasets.LoaderOptions{Seq: cfg.Data.SeqLen, Packing: cfg.Data.Packing, Shuffle: cfg.Data.Shuffle, Seed: cfg.Train.Seed})
			if err != nil {
				return err
			}
			rows := l.RowsInEpoch(0)
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(struct {
					datasets.Stats
					MaskedShare  float64 `json:"masked_share"`
					RowsPerEpoch int     `json:"rows_per_epoch"`
				}{data.Stats, data.Stats.MaskedShare(), rows})
			}
			printDataStats(out, cfg, data.Stats, rows)
			var tok *tokenizer.Tokenizer
			if modelDir != "" {
				tok, _ = tokenizer.Load(modelDir) // for display only: ids are shown without it
			}
			dim := isTerminal(out)
			for i := range min(show, data.Train.Examples()) {
				ex, where, err := data.Train.Example(i)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "\nexample %d (%s): %d tokens, %d trained\n", i+1, where, len(ex.IDs), trained(ex))
				fmt.Fprintln(out, renderExample(tok, ex, dim))
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&show, "show", 2, "print the first N training examples, masked tokens [in brackets]")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the statistics as JSON")
	return cmd
}

// dataModel finds the model directory (for its tokenizer) and vocabulary size
// without loading the weights; builtin:tiny has no tokenizer.
func dataModel(cfg *configs.Config) (string, int, error) {
	if spec, ok := builtin.Named(strings.TrimPrefix(cfg.Model.Path, "builtin:")); ok && strings.HasPrefix(cfg.Model.Path, "builtin:") {
		return "", spec.Vocab, nil
	}
	mc, err := model.ReadConfig(cfg.Model.Path)
	if err != nil {
		return "", 0, fmt.Errorf("model.path: %w", err)
	}
	return cfg.Model.Path, mc.Vocab, nil
}

func printDataStats(w io.Writer, cfg *configs.Config, s datasets.Stats, rows int) {
	d := cfg.Data
	var srcs []string
	if d.Train != "" {
		srcs = append(srcs, fmt.Sprintf("%s (%s)", d.Train, d.Format))
	}
	for _, src := range d.Sources {
		f := src.Format
		if f == "" {
			f = d.Format
		}
		srcs = append(srcs, fmt.Sprintf("%s (%s, weight %g)", src.Path, f, src.Weight))
	}
	maxLen := d.MaxLen
	if maxLen == 0 {
		maxLen = d.SeqLen
	}
	fmt.Fprintf(w, "data:         %s\n", strings.Join(srcs, ", "))
	fmt.Fprintf(w, "records:      %d read\n", s.Records)
	fmt.Fprintf(w, "examples:     %d for training, %d for validation\n", s.TrainExamples, s.ValExamples)
	fmt.Fprintf(w, "tokens:       %d for training, %d for validation\n", s.TrainTokens, s.ValTokens)
	fmt.Fprintf(w, "masked:       %.1f%% of tokens (not trained; data.train_on_inputs=%t)\n", 100*s.MaskedShare(), d.TrainOnInputs)
	fmt.Fprintf(w, "truncated:    %d (max_len %d, truncation %s)\n", s.Truncated, maxLen, d.Truncation)
	fmt.Fprintf(w, "dropped:      %d too long, %d with nothing to train on\n", s.Dropped, s.Untrainable)
	fmt.Fprintf(w, "bad records:  %d skipped\n", s.Skipped)
	for _, m := range s.FirstBad {
		fmt.Fprintf(w, "              %s\n", m)
	}
	if s.NotText > 0 {
		fmt.Fprintf(w, "not text:     %d files skipped\n", s.NotText)
	}
	if s.NotUTF8 > 0 {
		fmt.Fprintf(w, "not UTF-8:    %d records held bytes that are not UTF-8, read as U+FFFD\n", s.NotUTF8)
	}
	if s.Fallbacks > 0 {
		fmt.Fprintf(w, "boundaries:   %d label boundaries fell inside a token (the token is trained)\n", s.Fallbacks)
	}
	layout := "one example per row, padded"
	if d.Packing {
		layout = "packed"
	}
	fmt.Fprintf(w, "rows:         %d of %d tokens per epoch (%s)\n", rows, d.SeqLen, layout)
}

func trained(ex datasets.Example) int {
	n := 0
	for i := 1; i < len(ex.IDs); i++ {
		if ex.Labels == nil || ex.Labels[i] != -100 {
			n++
		}
	}
	return n
}

// renderExample shows an example's text with the masked runs in brackets
// (dim too on a terminal); without a tokenizer, its ids.
func renderExample(tok *tokenizer.Tokenizer, ex datasets.Example, dim bool) string {
	var b strings.Builder
	var run []int
	runMasked := false
	flush := func() {
		if len(run) == 0 {
			return
		}
		var text string
		if tok != nil {
			text = tok.Decode(run, false)
		} else {
			parts := make([]string, len(run))
			for i, id := range run {
				parts[i] = fmt.Sprint(id)
			}
			text = strings.Join(parts, " ")
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
		}
		if runMasked {
			if dim {
				b.WriteString("\x1b[2m")
			}
			b.WriteString("[" + text + "]")
			if dim {
				b.WriteString("\x1b[0m")
			}
		} else {
			b.WriteString(text)
		}
		run = run[:0]
	}
	for i, id := range ex.IDs {
		// The first token is never predicted: it counts as masked.
		masked := i == 0 || (ex.Labels != nil && ex.Labels[i] == -100)
		if masked != runMasked {
			flush()
			runMasked = masked
		}
		run = append(run, int(id))
	}
	flush()
	return b.String()
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
