package model

import (
	"fmt"
	"slices"

	"github.com/tune-dev/tune/checkpoints/safetensors"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/kernels"
)

// Source hands out checkpoint tensors by Hugging Face name (a hf.Dir).
type Source interface {
	Has(name string) bool
	Tensor(name string) (safetensors.Tensor, error)
}

// labeler is a Source whose tensors and configuration users know by other
// names (a GGUF file's), for Load's errors.
type labeler interface {
	label(hfName string) string // "blk.0.attn_q.weight (model.layers.0.self_attn.q_proj.weight)"
	layersKey() string          // "llama.block_count"
}

// labels returns how Load's errors name a tensor and the layer count.
func labels(src Source) (tensor func(string) string, layers string) {
	if l, ok := src.(labeler); ok {
		return l.label, l.layersKey()
	}
	return func(s string) string { return s }, "config.json says num_hidden_layers"
}

// Layer holds one decoder layer's frozen weights.
type Layer struct {
	AttnNorm, MLPNorm   []float32
	Q, K, V, O          kernels.Matrix
	QBias, KBias, VBias []float32 // qwen2 and attention_bias
	OBias               []float32 // llama's attention_bias
	QNorm, KNorm        []float32 // qwen3
	Gate, Up, Down      kernels.Matrix
}

// Model is a Llama-family decoder with its frozen weights, kept in the dtype they
// were stored in (views into the memory-mapped checkpoint).
type Model struct {
	Config Config
	Embed  kernels.Matrix
	LMHead kernels.Matrix // Embed itself when the embeddings are tied
	Norm   []float32
	Layers []Layer
}

// LayerPrefix is the Hugging Face name prefix of layer i's tensors.
func LayerPrefix(i int) string { return fmt.Sprintf("model.layers.%d.", i) }

// Projections returns the linear modules of a layer by their Hugging Face
// names, in forward order: a new slice each call, so no caller can change
// another's list.
func Projections() []string {
	return []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
}

// ProjectionShape is a projection's (in, out) for a model configuration.
func ProjectionShape(c Config, name string) (in, out int) {
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	switch name {
	case "q_proj":
		return c.Hidden, q
	case "k_proj", "v_proj":
		return c.Hidden, kv
	case "o_proj":
		return q, c.Hidden
	case "gate_proj", "up_proj":
		return c.Hidden, c.Intermediate
	case "down_proj":
		return c.Intermediate, c.Hidden
	}
	panic("model: unknown projection " + name)
}

// ProjectionPath is the name of a projection inside a layer: "self_attn.q_proj".
func ProjectionPath(module string) string {
	if slices.Contains([]string{"gate_proj", "up_proj", "down_proj"}, module) {
		return "mlp." + module
	}
	return "self_attn." + module
}

// Load checks that src has every tensor the configuration needs, with the right
// shape and a float dtype, and builds the model over them without copying
// (norm and bias vectors are widened to float32; they are tiny).
func Load(cfg Config, src Source) (*Model, error) {
	l := loader{src: src}
	label, layers := labels(src)
	c := cfg
	// The number of layers is checked against the weights before anything
	// is sized from it: the last one must be there, and no layer after it.
	if last := LayerPrefix(c.Layers-1) + "input_layernorm.weight"; !src.Has(last) {
		return nil, fmt.Errorf("%s %d, but there is no tensor %s", layers, c.Layers, label(last))
	}
	if next := LayerPrefix(c.Layers) + "input_layernorm.weight"; src.Has(next) {
		return nil, fmt.Errorf("%s %d, but the weights hold more layers (%s)", layers, c.Layers, label(next))
	}
	qDim, kvDim := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	proj := func(p, name string) kernels.Matrix {
		in, out := ProjectionShape(c, name)
		return l.matrix(p+ProjectionPath(name)+".weight", out, in)
	}
	m := &Model{Config: cfg}
	m.Embed = l.matrix("model.embed_tokens.weight", c.Vocab, c.Hidden)
	m.Norm = l.vector("model.norm.weight", c.Hidden)
	switch {
	case !c.TieEmbeddings:
		m.LMHead = l.matrix("lm_head.weight", c.Vocab, c.Hidden)
	default:
		m.LMHead = m.Embed
	}
	m.Layers = make([]Layer, 0, c.Layers)
	for i := 0; i < c.Layers && l.err == nil; i++ {
		p := LayerPrefix(i)
		ly := Layer{
			AttnNorm: l.vector(p+"input_layernorm.weight", c.Hidden),
			MLPNorm:  l.vector(p+"post_attention_layernorm.weight", c.Hidden),
			Q:        proj(p, "q_proj"),
			K:        proj(p, "k_proj"),
			V:        proj(p, "v_proj"),
			O:        proj(p, "o_proj"),
			Gate:     proj(p, "gate_proj"),
			Up:       proj(p, "up_proj"),
			Down:     proj(p, "down_proj"),
		}
		if c.AttentionBias {
			ly.QBias = l.vector(p+"self_attn.q_proj.bias", qDim)
			ly.KBias = l.vector(p+"self_attn.k_proj.bias", kvDim)
			ly.VBias = l.vector(p+"self_attn.v_proj.bias", kvDim)
		}
		if c.OutputBias {
			ly.OBias = l.vector(p+"self_attn.o_proj.bias", c.Hidden)
		}
		if c.QKNorm {
			ly.QNorm = l.vector(p+"self_attn.q_norm.weight", c.HeadDim)
			ly.KNorm = l.vector(p+"self_attn.k_norm.weight", c.HeadDim)
		}
		m.Layers = append(m.Layers, ly)
	}
	if l.err != nil {
		return nil, l.err
	}
	return m, nil
}

// loader keeps the first error so that Load reads as a list of tensors.
type loader struct {
	src Source
	err error
}

func (l *loader) tensor(name string, shape ...int) (kernels.Matrix, bool) {
	if l.err != nil {
		return kernels.Matrix{}, false
	}
	t, err := l.src.Tensor(name)
	if err != nil {
		l.err = err
		return kernels.Matrix{}, false
	}
	if !slices.Equal(t.Shape, shape) {
		label, _ := labels(l.src)
		l.err = fmt.Errorf("tensor %s: shape %v, but the configuration implies %v", label(name), t.Shape, shape)
		return kernels.Matrix{}, false
	}
	rows, cols := 1, shape[len(shape)-1]
	if len(shape) == 2 {
		rows = shape[0]
	}
	m, err := kernels.NewMatrix(t.DType, rows, cols, t.Data)
	if err != nil {
		l.err = fmt.Errorf("tensor %s: %w", name, err)
		return kernels.Matrix{}, false
	}
	return m, true
}

func (l *loader) matrix(name string, rows, cols int) kernels.Matrix {
	m, _ := l.tensor(name, rows, cols)
	return m
}

func (l *loader) vector(name string, n int) []float32 {
	m, ok := l.tensor(name, n)
	if !ok {
		return nil
	}
	return slices.Clone(m.Float32())
}

// ParamCount is the number of parameters, counting tied embeddings once.
func (m *Model) ParamCount() int64 {
	var n int64
	m.eachMatrix(func(name string, w kernels.Matrix) { n += int64(w.Rows) * int64(w.Cols) })
	return n
}

// WeightBytes is the memory the frozen weights take in their stored dtypes
// (norm and bias vectors count as float32, as held).
func (m *Model) WeightBytes() int64 {
	var n int64
	m.eachMatrix(func(name string, w kernels.Matrix) { n += w.Bytes() })
	return n
}

// DTypes counts parameters by stored dtype.
func (m *Model) DTypes() map[dtype.DType]int64 {
	out := map[dtype.DType]int64{}
	m.eachMatrix(func(name string, w kernels.Matrix) { out[w.DType] += int64(w.Rows) * int64(w.Cols) })
	return out
}

func (m *Model) eachMatrix(f func(name string, w kernels.Matrix)) {
	vec := func(name string, v []float32) {
		if v != nil {
			f(name, kernels.MatrixF32(1, len(v), v))
		}
	}
	f("embed_tokens", m.Embed)
	if !m.Config.TieEmbeddings {
		f("lm_head", m.LMHead)
	}
	vec("norm", m.Norm)
	for i, ly := range m.Layers {
		p := LayerPrefix(i)
		for name, w := range map[string]kernels.Matrix{"q": ly.Q, "k": ly.K, "v": ly.V, "o": ly.O, "gate": ly.Gate, "up": ly.Up, "down": ly.Down} {
			f(p+name, w)
		}
		for name, v := range map[string][]float32{"attn_norm": ly.AttnNorm, "mlp_norm": ly.MLPNorm, "q_bias": ly.QBias, "k_bias": ly.KBias, "v_bias": ly.VBias, "o_bias": ly.OBias, "q_norm": ly.QNorm, "k_norm": ly.KNorm} {
			vec(p+name, v)
		}
	}
}
