package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/model"
)

func newInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect MODEL",
		Short: "Architecture, parameter count, dtypes and weight memory of a model directory or GGUF file",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			base, md, err := model.Open(args[0])
			if err != nil {
				return err
			}
			defer md.Close()
			printModel(cmd.OutOrStdout(), args[0], base, md)
			return nil
		},
	}
}

func printModel(out io.Writer, dir string, m *model.Model, md model.Checkpoint) {
	c := m.Config
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(w, "%s\t%v\n", k, v) }
	row("model", dir)
	row("model_type", c.ModelType)
	row("layers", c.Layers)
	row("hidden size", c.Hidden)
	row("intermediate size", c.Intermediate)
	row("attention heads", fmt.Sprintf("%d query, %d key/value, head_dim %d", c.Heads, c.KVHeads, c.HeadDim))
	row("vocabulary", c.Vocab)
	row("tied embeddings", c.TieEmbeddings)
	rope := fmt.Sprintf("theta %g", c.RopeTheta)
	if c.RopeScaling.Type != "" {
		rope += fmt.Sprintf(", %s scaling ×%g", c.RopeScaling.Type, c.RopeScaling.Factor)
	}
	row("rope", rope)
	if c.SlidingWindow > 0 {
		row("sliding window", c.SlidingWindow)
	}
	row("parameters", humanCount(m.ParamCount()))
	// As stored: the model widens norm and bias vectors to f32 in memory.
	dts, stored := map[dtype.DType]int64{}, map[dtype.DType]int64{}
	for _, name := range md.Names() {
		if info, ok := md.Info(name); ok {
			n := int64(1)
			for _, d := range info.Shape {
				n *= int64(d)
			}
			dts[info.DType] += n
			stored[info.DType] += info.End - info.Begin
		}
	}
	var names, sizes []string
	for dt, n := range dts {
		names = append(names, fmt.Sprintf("%s %s", strings.ToLower(string(dt)), humanCount(n)))
		sizes = append(sizes, fmt.Sprintf("%s %s", strings.ToLower(string(dt)), humanBytes(stored[dt])))
	}
	sort.Strings(names)
	sort.Strings(sizes)
	row("dtypes", names)
	row("stored", sizes)
	row("weight memory", humanBytes(m.WeightBytes()))
	if model.IsGGUF(dir) {
		row("format", "GGUF")
	}
	row("files", len(md.Files()))
	w.Flush()
}

func humanCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

func humanBytes(n int64) string {
	const k = 1024
	switch {
	case n >= k*k*k:
		return fmt.Sprintf("%.2f GiB", float64(n)/(k*k*k))
	case n >= k*k:
		return fmt.Sprintf("%.1f MiB", float64(n)/(k*k))
	case n >= k:
		return fmt.Sprintf("%.1f KiB", float64(n)/k)
	}
	return fmt.Sprintf("%d B", n)
}
