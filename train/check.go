package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/datasets"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
	"github.com/tune-dev/tune/tokenizer"
)

// CheckConfig checks a loaded config against the files it names, as far as
// that goes without training: the model directory opens and its weights
// have the shapes its config.json says; data.seq_len fits the model;
// lora.layers exist; lora.init_from loads as an adapter of this model; every
// data path names files; the model has a tokenizer when the data need one,
// and a chat template for chat data. Every problem is a *configs.FieldError
// placed at the line (or override) that set the field, all of them in a
// configs.Errors; nil when there is none. tune validate and tune run both
// call it, so they say the same.
func CheckConfig(cfg *configs.Config) error {
	var errs configs.Errors
	add := func(path, format string, a ...any) {
		errs = append(errs, cfg.Errorf(path, format, a...))
	}
	mc, ok := checkModel(cfg, add)
	if ok {
		if cfg.Data.SeqLen > mc.MaxPositions {
			add("data.seq_len", "%d exceeds the model's max_position_embeddings %d", cfg.Data.SeqLen, mc.MaxPositions)
		}
		for i, l := range cfg.LoRA.Layers {
			if l >= mc.Layers {
				add(fmt.Sprintf("lora.layers[%d]", i), "layer %d does not exist: the model has %d (0 to %d)", l, mc.Layers, mc.Layers-1)
			}
		}
		if cfg.LoRA.LastLayers > mc.Layers {
			add("lora.last_layers", "%d, but the model has %d layers", cfg.LoRA.LastLayers, mc.Layers)
		}
		if cfg.LoRA.InitFrom != "" {
			if _, err := lora.FromPEFT(cfg.LoRA.InitFrom, mc); err != nil {
				add("lora.init_from", "%v", err)
			}
		}
	}
	checkData(cfg, ok, add)
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// checkModel opens model.path (headers and shapes only) for its config.
func checkModel(cfg *configs.Config, add func(path, format string, a ...any)) (model.Config, bool) {
	if name, ok := strings.CutPrefix(cfg.Model.Path, "builtin:"); ok {
		spec, ok := builtin.Named(name)
		if !ok {
			add("model.path", "unknown built-in model %q (tune has builtin:%s)", cfg.Model.Path, strings.Join(configs.BuiltinModels(), ", builtin:"))
			return model.Config{}, false
		}
		b, err := json.Marshal(spec.Config())
		if err != nil {
			return model.Config{}, false
		}
		mc, err := model.ParseConfig(b)
		return mc, err == nil
	}
	m, md, err := model.Open(cfg.Model.Path)
	if err != nil {
		add("model.path", "%v", err)
		return model.Config{}, false
	}
	md.Close()
	return m.Config, true
}

// checkData checks that the data paths name files, and the tokenizer.
func checkData(cfg *configs.Config, modelOK bool, add func(path, format string, a ...any)) {
	d := cfg.Data
	type src struct{ field, path, format string }
	var srcs []src
	if d.Train != "" {
		srcs = append(srcs, src{"data.train", d.Train, d.Format})
	}
	if d.Val != "" {
		srcs = append(srcs, src{"data.val", d.Val, d.Format})
	}
	for i, s := range d.Sources {
		f := s.Format
		if f == "" {
			f = d.Format
		}
		srcs = append(srcs, src{fmt.Sprintf("data.sources[%d].path", i), s.Path, f})
	}
	needTok, needChat := false, d.PromptTemplate == datasets.TemplateChat
	for _, s := range srcs {
		if strings.HasPrefix(s.path, "builtin:") {
			continue // datasets says which built-in names it has
		}
		if err := datasets.CheckPath(s.path); err != nil {
			add(s.field, "%v", err)
		}
		needTok = needTok || s.format != datasets.FormatPretokenized
		needChat = needChat || s.format == datasets.FormatChat
	}
	if !needTok || !modelOK || strings.HasPrefix(cfg.Model.Path, "builtin:") {
		return
	}
	if _, err := os.Stat(filepath.Join(cfg.Model.Path, "tokenizer.json")); err != nil && !model.IsGGUF(cfg.Model.Path) {
		add("data.format", "%s data need the model's tokenizer, and %s has no tokenizer.json", d.Format, cfg.Model.Path)
		return
	}
	tok, err := tokenizer.Load(cfg.Model.Path)
	if err != nil {
		add("model.path", "%v", err)
		return
	}
	if needChat && tok.ChatTemplate() == "" {
		field := "data.format"
		if d.PromptTemplate == datasets.TemplateChat {
			field = "data.prompt_template"
		}
		add(field, "chat data need a chat template, and %s has none (no chat_template in tokenizer_config.json, no chat_template.jinja, no tokenizer.chat_template in a GGUF): use the model's -Instruct variant, add a template there, or use instruction data with data.prompt_template: alpaca", cfg.Model.Path)
	}
}

// ModelDir is the model directory a config names, builtin:NAME generated
// under its output.dir (once), as tune run does.
func ModelDir(cfg *configs.Config) (string, error) {
	return resolveModel(cfg.Model.Path, BuiltinDir(cfg))
}

// BuiltinDir is where tune run generates a config's builtin:NAME model.
func BuiltinDir(cfg *configs.Config) string { return filepath.Join(cfg.Output.Dir, "base-model") }
