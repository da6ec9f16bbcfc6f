package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tune-dev/tune/tokenizer"
)

func newTokenizeCmd() *cobra.Command {
	var dir, text, file string
	var asJSON, noSpecial bool
	cmd := &cobra.Command{
		Use:   "tokenize --model DIR (--text T | --file F)",
		Short: "Print the token ids (and tokens) of a text, to check a tokenizer",
		Long:  "DIR needs only tokenizer.json (and tokenizer_config.json for BOS/EOS rules and the chat template); a GGUF file's tokenizer.ggml metadata is read too.",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			// --text "" is a text: the empty one (BOS only).
			if dir == "" || cmd.Flags().Changed("text") == (file != "") {
				return usageError{fmt.Errorf("tokenize needs --model DIR and one of --text or --file")}
			}
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				text = string(b)
			}
			tok, err := tokenizer.Load(dir)
			if err != nil {
				return err
			}
			ids := tok.Encode(text, !noSpecial)
			tokens := tok.Tokens(ids)
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(map[string]any{"ids": ids, "tokens": tokens, "count": len(ids)})
			}
			var b strings.Builder
			for i, id := range ids {
				fmt.Fprintf(&b, "%d\t%q\n", id, tokens[i])
			}
			fmt.Fprintf(&b, "%d tokens\n", len(ids))
			_, err = fmt.Fprint(out, b.String())
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "model", "", "directory with tokenizer.json")
	f.StringVar(&text, "text", "", "text to tokenize")
	f.StringVar(&file, "file", "", "file to tokenize")
	f.BoolVar(&asJSON, "json", false, "print {ids, tokens, count} as JSON")
	f.BoolVar(&noSpecial, "no-special", false, "do not add BOS/EOS")
	return cmd
}
