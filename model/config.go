package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/tune-dev/tune/kernels"
)

// Config is what the forward pass needs from config.json.
type Config struct {
	ModelType     string
	Hidden        int
	Intermediate  int
	Layers        int
	Heads         int
	KVHeads       int
	HeadDim       int
	Vocab         int
	MaxPositions  int
	RMSNormEps    float64
	RopeTheta     float64
	RopeScaling   kernels.RopeScaling
	TieEmbeddings bool
	AttentionBias bool // bias on q, k and v (always for qwen2)
	OutputBias    bool // bias on o_proj too (llama attention_bias)
	QKNorm        bool // RMSNorm over each head of q and k before RoPE (qwen3)
	TorchDtype    string
	SlidingWindow int
}

// arch holds what differs between the supported model types.
type arch struct {
	qkvBias, qkNorm bool
	ropeTheta       float64
	eps             float64
}

var arches = map[string]arch{
	"llama":   {ropeTheta: 10000, eps: 1e-6},
	"mistral": {ropeTheta: 10000, eps: 1e-6},
	"qwen2":   {qkvBias: true, ropeTheta: 10000, eps: 1e-6},
	"qwen3":   {qkNorm: true, ropeTheta: 10000, eps: 1e-6},
}

// SupportedTypes lists the model_type values tune can build.
func SupportedTypes() []string {
	var s []string
	for k := range arches {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// rawConfig mirrors the config.json fields; pointers tell absent from zero.
type rawConfig struct {
	ModelType        string          `json:"model_type"`
	Hidden           *int            `json:"hidden_size"`
	Intermediate     *int            `json:"intermediate_size"`
	Layers           *int            `json:"num_hidden_layers"`
	Heads            *int            `json:"num_attention_heads"`
	KVHeads          *int            `json:"num_key_value_heads"`
	HeadDim          *int            `json:"head_dim"`
	Vocab            *int            `json:"vocab_size"`
	MaxPositions     *int            `json:"max_position_embeddings"`
	RMSNormEps       *float64        `json:"rms_norm_eps"`
	RopeTheta        *float64        `json:"rope_theta"`
	RopeScaling      json.RawMessage `json:"rope_scaling"`
	Tie              *bool           `json:"tie_word_embeddings"`
	AttentionBias    *bool           `json:"attention_bias"`
	MLPBias          *bool           `json:"mlp_bias"`
	HiddenAct        *string         `json:"hidden_act"`
	TorchDtype       *string         `json:"torch_dtype"`
	SlidingWindow    *int            `json:"sliding_window"`
	UseSlidingWindow *bool           `json:"use_sliding_window"`
}

// ParseConfig reads config.json. Errors name the field and what was expected;
// the caller adds the file name.
func ParseConfig(data []byte) (Config, error) {
	var r rawConfig
	if err := json.Unmarshal(data, &r); err != nil {
		return Config{}, jsonError(err)
	}
	a, ok := arches[r.ModelType]
	if !ok {
		if r.ModelType == "" {
			return Config{}, fmt.Errorf("model_type: missing; expected one of %s", strings.Join(SupportedTypes(), ", "))
		}
		return Config{}, fmt.Errorf("model_type: %q is not supported; expected one of %s", r.ModelType, strings.Join(SupportedTypes(), ", "))
	}
	c := Config{ModelType: r.ModelType, QKNorm: a.qkNorm, AttentionBias: a.qkvBias}
	var err error
	positive := func(field string, p *int, def int) int {
		if err != nil {
			return 0
		}
		switch {
		case p == nil && def > 0:
			return def
		case p == nil:
			err = fmt.Errorf("%s: missing; expected a positive integer", field)
		case *p <= 0:
			err = fmt.Errorf("%s: %d; expected a positive integer", field, *p)
		default:
			return *p
		}
		return 0
	}
	c.Hidden = positive("hidden_size", r.Hidden, 0)
	c.Intermediate = positive("intermediate_size", r.Intermediate, 0)
	c.Layers = positive("num_hidden_layers", r.Layers, 0)
	c.Heads = positive("num_attention_heads", r.Heads, 0)
	c.Vocab = positive("vocab_size", r.Vocab, 0)
	c.KVHeads = positive("num_key_value_heads", r.KVHeads, c.Heads)
	c.MaxPositions = positive("max_position_embeddings", r.MaxPositions, 2048)
	if err != nil {
		return Config{}, err
	}
	if c.Heads%c.KVHeads != 0 {
		return Config{}, fmt.Errorf("num_key_value_heads: %d does not divide num_attention_heads %d", c.KVHeads, c.Heads)
	}
	if r.HeadDim == nil && r.ModelType == "qwen3" {
		c.HeadDim = 128 // Qwen3Config's default
	} else if r.HeadDim != nil {
		c.HeadDim = positive("head_dim", r.HeadDim, 0)
	} else if c.Hidden%c.Heads != 0 {
		return Config{}, fmt.Errorf("head_dim: missing, and hidden_size %d is not a multiple of num_attention_heads %d", c.Hidden, c.Heads)
	} else {
		c.HeadDim = c.Hidden / c.Heads
	}
	if err != nil {
		return Config{}, err
	}
	if c.HeadDim%2 != 0 {
		return Config{}, fmt.Errorf("head_dim: %d; rotary embeddings need an even head size", c.HeadDim)
	}
	if err := c.checkSizes(); err != nil {
		return Config{}, err
	}
	c.RMSNormEps, c.RopeTheta = a.eps, a.ropeTheta
	if r.RMSNormEps != nil {
		if *r.RMSNormEps <= 0 {
			return Config{}, fmt.Errorf("rms_norm_eps: %g; expected a positive number", *r.RMSNormEps)
		}
		c.RMSNormEps = *r.RMSNormEps
	}
	if r.RopeTheta != nil {
		if *r.RopeTheta <= 1 {
			return Config{}, fmt.Errorf("rope_theta: %g; expected a number above 1", *r.RopeTheta)
		}
		c.RopeTheta = *r.RopeTheta
	}
	if r.Tie != nil {
		c.TieEmbeddings = *r.Tie
	}
	if r.AttentionBias != nil && *r.AttentionBias {
		if r.ModelType == "qwen3" || r.ModelType == "mistral" {
			return Config{}, fmt.Errorf("attention_bias: true is not supported for %s", r.ModelType)
		}
		c.AttentionBias, c.OutputBias = true, r.ModelType == "llama"
	}
	if r.MLPBias != nil && *r.MLPBias {
		return Config{}, fmt.Errorf("mlp_bias: true is not supported")
	}
	if r.HiddenAct != nil && *r.HiddenAct != "silu" {
		return Config{}, fmt.Errorf("hidden_act: %q is not supported; expected \"silu\"", *r.HiddenAct)
	}
	if r.TorchDtype != nil {
		c.TorchDtype = *r.TorchDtype
	}
	if r.UseSlidingWindow != nil && *r.UseSlidingWindow {
		// qwen2/qwen3 window only the layers from max_window_layers on.
		return Config{}, fmt.Errorf("use_sliding_window: true is not supported")
	}
	if r.SlidingWindow != nil {
		// Mistral's null or 0 means full attention; a negative window is a typo.
		if *r.SlidingWindow < 0 {
			return Config{}, fmt.Errorf("sliding_window: %d; expected 0 (none) or a positive number of positions", *r.SlidingWindow)
		}
		if r.ModelType == "mistral" {
			c.SlidingWindow = *r.SlidingWindow
		}
	}
	if c.RopeScaling, err = parseRopeScaling(r.RopeScaling); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Bounds on config.json's sizes. The largest released models stay far below
// them (405B Llama: 126 layers, hidden 16384, 128 heads; Gemma 3: vocabulary
// 262144); a file beyond them is corrupt or hostile, and refusing it here
// keeps every buffer sized from it (KV cache, RoPE tables, activations) sane.
const (
	maxLayers       = 1024
	maxHidden       = 1 << 16
	maxIntermediate = 1 << 18
	maxHeads        = 1024
	maxHeadDim      = 1024
	maxVocab        = 1 << 22
	maxPositions    = 1 << 24
	// maxProjection bounds heads·head_dim, the width of q.
	maxProjection = 1 << 17
)

// checkSizes holds the sizes against the bounds above and against each other.
func (c Config) checkSizes() error {
	for _, f := range []struct {
		name   string
		v, max int
	}{
		{"num_hidden_layers", c.Layers, maxLayers},
		{"hidden_size", c.Hidden, maxHidden},
		{"intermediate_size", c.Intermediate, maxIntermediate},
		{"num_attention_heads", c.Heads, maxHeads},
		{"num_key_value_heads", c.KVHeads, maxHeads},
		{"head_dim", c.HeadDim, maxHeadDim},
		{"vocab_size", c.Vocab, maxVocab},
		{"max_position_embeddings", c.MaxPositions, maxPositions},
	} {
		if f.v > f.max {
			return fmt.Errorf("%s: %d; tune reads models with at most %d (a larger value is a corrupt config.json)", f.name, f.v, f.max)
		}
	}
	if q := c.Heads * c.HeadDim; q > maxProjection {
		return fmt.Errorf("num_attention_heads × head_dim: %d × %d = %d; expected at most %d", c.Heads, c.HeadDim, q, maxProjection)
	}
	return nil
}

func parseRopeScaling(raw json.RawMessage) (kernels.RopeScaling, error) {
	var s kernels.RopeScaling
	if len(raw) == 0 || string(raw) == "null" {
		return s, nil
	}
	var m struct {
		Type     string   `json:"type"`
		RopeType string   `json:"rope_type"`
		Factor   *float64 `json:"factor"`
		Low      *float64 `json:"low_freq_factor"`
		High     *float64 `json:"high_freq_factor"`
		Orig     *float64 `json:"original_max_position_embeddings"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return s, fmt.Errorf("rope_scaling: %w", jsonError(err))
	}
	s.Type = m.RopeType
	if s.Type == "" {
		s.Type = m.Type
	}
	need := func(p *float64) float64 {
		if p == nil || *p <= 0 {
			return -1
		}
		return *p
	}
	switch s.Type {
	case "default":
		s.Type = ""
	case "linear":
		if s.Factor = need(m.Factor); s.Factor < 0 {
			return s, fmt.Errorf("rope_scaling.factor: expected a positive number")
		}
	case "llama3":
		fields := []struct {
			name string
			p    *float64
			dst  *float64
		}{{"factor", m.Factor, &s.Factor}, {"low_freq_factor", m.Low, &s.LowFreqFactor}, {"high_freq_factor", m.High, &s.HighFreqFactor}, {"original_max_position_embeddings", m.Orig, &s.OriginalMaxPositions}}
		for _, f := range fields {
			if *f.dst = need(f.p); *f.dst < 0 {
				return s, fmt.Errorf("rope_scaling.%s: expected a positive number", f.name)
			}
		}
		if s.HighFreqFactor == s.LowFreqFactor {
			return s, fmt.Errorf("rope_scaling: high_freq_factor must differ from low_freq_factor")
		}
	default:
		return s, fmt.Errorf("rope_scaling: type %q is not supported; expected linear or llama3", s.Type)
	}
	return s, nil
}

// jsonError makes encoding/json's errors name the field in config terms.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "(top level)"
		}
		return fmt.Errorf("%s: got a JSON %s, expected %s", field, te.Value, te.Type)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, se)
	}
	return err
}
