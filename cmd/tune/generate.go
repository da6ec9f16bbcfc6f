package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tune-dev/tune/kernels"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/tokenizer"
)

// endOfTurn are the tokens chat models end a reply with, besides EOS.
var endOfTurn = []string{"<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "<end_of_turn>", "</s>"}

func newGenerateCmd() *cobra.Command {
	var modelDir, adapterDir, prompt string
	var chat bool
	var opt model.SampleOptions
	cmd := &cobra.Command{
		Use:   "generate --model DIR [--adapter DIR] --prompt TEXT",
		Short: "Stream text from a model (and adapter), to try an adapter before exporting it",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if modelDir == "" || prompt == "" {
				return usageError{fmt.Errorf("generate needs --model DIR and --prompt TEXT")}
			}
			if err := checkSampling(opt); err != nil {
				return err
			}
			base, md, err := model.OpenFinite(modelDir)
			if err != nil {
				return err
			}
			defer md.Close()
			tok, err := tokenizer.Load(modelDir)
			if err != nil {
				return err
			}
			var delta model.Factors
			if adapterDir != "" {
				a, err := lora.FromPEFT(adapterDir, base.Config)
				if err != nil {
					return err
				}
				warnBase(cmd, a.BaseModel, modelDir)
				delta = a
			}
			var ids []int
			if chat {
				text, err := tok.ApplyChatTemplate([]tokenizer.Message{{Role: "user", Content: prompt}}, true)
				if err != nil {
					return err
				}
				ids = tok.Encode(text, false) // the template already holds BOS
			} else {
				ids = tok.Encode(prompt, true)
			}
			in := make([]int32, len(ids))
			for i, id := range ids {
				in[i] = int32(id)
			}
			if eos, ok := tok.EOS(); ok {
				opt.Stop = append(opt.Stop, int32(eos))
			}
			for _, s := range endOfTurn {
				if id, ok := tok.TokenID(s); ok {
					opt.Stop = append(opt.Stop, int32(id))
				}
			}
			if maxPos := base.Config.MaxPositions; len(in) >= maxPos {
				return usageError{fmt.Errorf("--prompt: %d tokens leave no room in the model's max_position_embeddings %d", len(in), maxPos)}
			}
			pool := kernels.NewPool(0)
			defer pool.Close()
			dec := base.NewDecoder(min(len(in)+opt.MaxTokens, base.Config.MaxPositions), delta, pool)
			out := cmd.OutOrStdout()
			var gen []int
			printed := ""
			err = model.Generate(dec, in, opt, func(id int32) bool {
				gen = append(gen, int(id))
				text := tok.Decode(gen, true)
				// Hold back a partial UTF-8 character until its last byte arrives.
				if !strings.HasSuffix(text, "\uFFFD") && strings.HasPrefix(text, printed) {
					fmt.Fprint(out, text[len(printed):])
					printed = text
				}
				return cmd.Context().Err() == nil
			})
			fmt.Fprintln(out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelDir, "model", "", "Hugging Face model directory (with tokenizer.json) or GGUF file")
	f.StringVar(&adapterDir, "adapter", "", "PEFT adapter directory (tune's adapter/ or a step checkpoint)")
	f.StringVar(&prompt, "prompt", "", "the prompt")
	f.BoolVar(&chat, "chat", false, "wrap the prompt as a user message in the model's chat template")
	f.IntVar(&opt.MaxTokens, "max-tokens", 128, "tokens to generate at most")
	f.Float64Var(&opt.Temperature, "temperature", 0, "sampling temperature; 0 is greedy")
	f.Float64Var(&opt.TopP, "top-p", 1, "nucleus sampling: keep the top tokens up to this probability")
	f.Uint64Var(&opt.Seed, "seed", 0, "random seed for sampling")
	return cmd
}

// checkSampling refuses sampling options outside their ranges.
func checkSampling(o model.SampleOptions) error {
	switch {
	case o.MaxTokens < 1:
		return usageError{fmt.Errorf("--max-tokens %d: expected at least 1", o.MaxTokens)}
	case !(o.Temperature >= 0) || math.IsInf(o.Temperature, 0):
		return usageError{fmt.Errorf("--temperature %g: expected 0 (greedy) or a positive number", o.Temperature)}
	case !(o.TopP > 0 && o.TopP <= 1):
		return usageError{fmt.Errorf("--top-p %g: expected a number in (0, 1]", o.TopP)}
	}
	return nil
}

// warnBase prints a warning when an adapter was trained on another model
// than the one it is applied to.
func warnBase(cmd *cobra.Command, adapterBase, modelDir string) {
	if w := lora.BaseMismatch(adapterBase, modelDir); w != "" {
		fmt.Fprintln(cmd.ErrOrStderr(), "tune: warning:", w)
	}
}
