package train

import (
	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/datasets"
)

// dataSpec maps the data section of a config to datasets' own options
// (tokenizer and vocabulary aside, which the caller sets): datasets never see
// the config.
func dataSpec(cfg *configs.Config) datasets.Spec {
	d := cfg.Data
	s := datasets.Spec{
		ValRatio:        d.ValRatio,
		MaxLen:          d.MaxLen,
		Truncation:      d.Truncation,
		TrainOnInputs:   d.TrainOnInputs,
		PromptTemplate:  d.PromptTemplate,
		SkipBadRecords:  d.SkipBadRecords,
		Seed:            cfg.Train.Seed,
		BuiltinExamples: d.BuiltinExamples,
	}
	if s.MaxLen <= 0 {
		s.MaxLen = d.SeqLen
	}
	if d.Train != "" {
		s.Train = []datasets.Source{{Path: d.Train, Format: d.Format, Weight: 1, Fields: datasets.Fields(d.Fields)}}
	}
	for _, src := range d.Sources {
		f := datasets.Fields(src.Fields)
		if f == nil {
			f = datasets.Fields(d.Fields)
		}
		format := src.Format
		if format == "" {
			format = d.Format
		}
		s.Train = append(s.Train, datasets.Source{Path: src.Path, Format: format, Weight: src.Weight, Fields: f})
	}
	if d.Val != "" {
		s.Val = []datasets.Source{{Path: d.Val, Format: d.Format, Weight: 1, Fields: datasets.Fields(d.Fields)}}
	}
	return s
}
