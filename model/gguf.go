package model

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/tune-dev/tune/checkpoints/gguf"
	"github.com/tune-dev/tune/checkpoints/safetensors"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/kernels"
)

// Checkpoint is an opened base model's weights under Hugging Face names: a
// Hugging Face directory (*hf.Dir) or a GGUF file. Tensors are views into
// memory-mapped files, valid until Close.
type Checkpoint interface {
	Source
	Names() []string
	Info(name string) (safetensors.TensorInfo, bool)
	Files() []string
	// ConfigJSON is config.json, or for a GGUF file one built from its
	// metadata, for writers of Hugging Face checkpoints.
	ConfigJSON() []byte
	Close() error
}

// ggufArches maps general.architecture to the model_type tune builds.
// Mistral has no llama.cpp architecture of its own: convert_hf_to_gguf
// writes it as llama.
var ggufArches = map[string]string{"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}

// ggufFile is a GGUF file presented as a Hugging Face checkpoint: tensors
// under Hugging Face names and in PyTorch's dimension order, llama-arch q/k
// rows back in Hugging Face's rotate-half order (copied once; everything else
// is a view into the mapping).
type ggufFile struct {
	f      *gguf.File
	cfg    Config
	config []byte            // config.json equivalent
	byHF   map[string]string // Hugging Face name -> GGUF name
	names  []string          // Hugging Face names, sorted

	mu       sync.Mutex
	permuted map[string][]byte // Hugging Face name -> unpermuted rows
}

// openGGUF opens a GGUF model file and reads its configuration.
func openGGUF(path string) (*ggufFile, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	g, err := newGGUFFile(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return g, nil
}

func newGGUFFile(f *gguf.File) (*ggufFile, error) {
	g := &ggufFile{f: f, byHF: map[string]string{}, permuted: map[string][]byte{}}
	for _, ti := range f.Tensors {
		if ti.Name == "rope_freqs.weight" {
			continue // read into the configuration's rope scaling
		}
		hf, _, ok := gguf.HFTensorName(ti.Name)
		if !ok {
			return nil, fmt.Errorf("tensor %s: not a tensor of the llama, qwen2 or qwen3 models tune builds", ti.Name)
		}
		if ti.Type.DType() == "" {
			return nil, fmt.Errorf("tensor %s: unsupported tensor type %s (tune handles %s)", ti.Name, ti.Type, strings.Join(gguf.Supported(), ", "))
		}
		g.byHF[hf] = ti.Name
		g.names = append(g.names, hf)
	}
	slices.Sort(g.names)
	var err error
	if g.cfg, g.config, err = ggufConfig(f); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *ggufFile) Names() []string    { return slices.Clone(g.names) }
func (g *ggufFile) Files() []string    { return []string{g.f.Path} }
func (g *ggufFile) ConfigJSON() []byte { return slices.Clone(g.config) }
func (g *ggufFile) Close() error       { return g.f.Close() }

func (g *ggufFile) label(hf string) string {
	name, _, _ := gguf.TensorName(hf)
	return name + " (" + hf + ")"
}

func (g *ggufFile) layersKey() string { return g.arch() + ".block_count is" }

func (g *ggufFile) Has(name string) bool {
	_, ok := g.byHF[name]
	return ok
}

func (g *ggufFile) Info(name string) (safetensors.TensorInfo, bool) {
	ti, ok := g.f.Info(g.byHF[name])
	if !ok {
		return safetensors.TensorInfo{}, false
	}
	return safetensors.TensorInfo{Name: name, DType: ti.Type.DType(), Shape: torchShape(ti.Dims), Begin: int64(ti.Offset), End: int64(ti.Offset) + ti.Size}, true
}

// torchShape reverses GGUF dims (row length first) into PyTorch's order.
func torchShape(dims []uint64) []int {
	s := make([]int, len(dims))
	for i, d := range dims {
		s[len(dims)-1-i] = int(d) // the reader bounds sizes by the file's
	}
	return s
}

func (g *ggufFile) Tensor(name string) (safetensors.Tensor, error) {
	gname, ok := g.byHF[name]
	if !ok {
		return safetensors.Tensor{}, fmt.Errorf("%s: no tensor %s", g.f.Path, g.label(name))
	}
	info, _ := g.Info(name)
	data, err := g.f.TensorData(gname)
	if err != nil {
		return safetensors.Tensor{}, err
	}
	t := safetensors.Tensor{Name: name, DType: info.DType, Shape: info.Shape, Data: data}
	if heads := g.permutedHeads(name); heads > 0 {
		if t.Data, err = g.unpermuted(name, gname, data, info.Shape, heads); err != nil {
			return safetensors.Tensor{}, err
		}
	}
	return t, nil
}

// permutedHeads is the head count convert_hf_to_gguf permuted a tensor's
// rows by (llama-arch q and k, weights and biases), 0 for the others.
func (g *ggufFile) permutedHeads(name string) int {
	if g.arch() != "llama" {
		return 0
	}
	switch {
	case strings.Contains(name, ".self_attn.q_proj."):
		return g.cfg.Heads
	case strings.Contains(name, ".self_attn.k_proj."):
		return g.cfg.KVHeads
	}
	return 0
}

func (g *ggufFile) arch() string {
	a, _ := g.f.Lookup("general.architecture")
	s, _ := a.(string)
	return s
}

// unpermuted returns the rows of a q/k tensor in Hugging Face's order,
// copying them on first use.
func (g *ggufFile) unpermuted(name, gname string, data []byte, shape []int, heads int) ([]byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b, ok := g.permuted[name]; ok {
		return b, nil
	}
	rows := shape[0]
	if rows%(2*heads) != 0 || len(data)%rows != 0 {
		return nil, fmt.Errorf("%s: tensor %s: %d rows do not split into %d heads of an even size", g.f.Path, gname, rows, heads)
	}
	b := gguf.UnpermuteRows(data, rows, heads)
	g.permuted[name] = b
	return b, nil
}

// ggufKeys are the metadata keys a configuration comes from, under the
// architecture's prefix, by the config.json field they stand for.
var ggufKeys = []struct{ field, key string }{
	{"num_hidden_layers", "block_count"},
	{"hidden_size", "embedding_length"},
	{"intermediate_size", "feed_forward_length"},
	{"num_attention_heads", "attention.head_count"},
	{"num_key_value_heads", "attention.head_count_kv"},
	{"head_dim", "attention.key_length"},
	{"max_position_embeddings", "context_length"},
	{"rms_norm_eps", "attention.layer_norm_rms_epsilon"},
	{"rope_theta", "rope.freq_base"},
}

// ggufConfig builds the model configuration from a GGUF file's metadata the
// way llama.cpp reads it, as a config.json, and checks it with ParseConfig
// (whose errors are renamed to the GGUF keys).
func ggufConfig(f *gguf.File) (Config, []byte, error) {
	archV, ok := f.Lookup("general.architecture")
	arch, isStr := archV.(string)
	switch {
	case !ok:
		return Config{}, nil, fmt.Errorf("general.architecture: missing; expected llama, qwen2 or qwen3")
	case !isStr:
		return Config{}, nil, fmt.Errorf("general.architecture: expected a string, got %T", archV)
	}
	modelType, ok := ggufArches[arch]
	if !ok {
		return Config{}, nil, fmt.Errorf("general.architecture: %q is not supported; expected llama, qwen2 or qwen3", arch)
	}
	if t, ok := f.Lookup("general.type"); ok && t != "model" {
		return Config{}, nil, fmt.Errorf("general.type: %v; expected a model, not an adapter or other file", t)
	}
	// architectures lets transformers load a directory written from it.
	hfClass := map[string]string{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[modelType]
	raw := map[string]any{"model_type": modelType, "architectures": []string{hfClass}}
	keyOf := map[string]string{"model_type": "general.architecture"}
	for _, k := range ggufKeys {
		key := arch + "." + k.key
		v, ok := f.Lookup(key)
		if !ok {
			continue
		}
		keyOf[k.field] = key
		n, err := metaNumber(key, v)
		if err != nil {
			return Config{}, nil, err
		}
		raw[k.field] = n
	}
	// llama.cpp's head size without key_length is hidden / heads, for
	// every architecture (Qwen3Config's default of 128 is not GGUF's).
	// Partial rotary embeddings and a value size unlike the key size are
	// not in the models tune builds.
	headDim := 0
	if h, ok := raw["num_attention_heads"].(float64); ok && h > 0 {
		if e, ok := raw["hidden_size"].(float64); ok && math.Mod(e, h) == 0 {
			headDim = int(e / h)
			if _, ok := raw["head_dim"]; !ok {
				raw["head_dim"] = e / h
			}
		}
	}
	if d, ok := raw["head_dim"].(float64); ok {
		headDim = int(d)
	}
	for _, key := range []string{"attention.value_length", "rope.dimension_count"} {
		if v, ok := f.Lookup(arch + "." + key); ok {
			n, err := metaNumber(arch+"."+key, v)
			if err != nil {
				return Config{}, nil, err
			}
			if int(n) != headDim {
				return Config{}, nil, fmt.Errorf("%s.%s: %v; tune needs it equal to the head size %d", arch, key, n, headDim)
			}
		}
	}
	emb, ok := f.Info("token_embd.weight")
	if !ok || len(emb.Dims) != 2 {
		return Config{}, nil, fmt.Errorf("tensor token_embd.weight: missing or not a matrix")
	}
	raw["vocab_size"] = float64(emb.Dims[1])
	keyOf["vocab_size"] = "token_embd.weight's rows"
	_, hasOutput := f.Info("output.weight")
	raw["tie_word_embeddings"] = !hasOutput
	if arch == "llama" {
		if _, ok := f.Info("blk.0.attn_q.bias"); ok {
			raw["attention_bias"] = true
		}
	}
	if d, ok := map[dtype.DType]string{dtype.F32: "float32", dtype.F16: "float16", dtype.BF16: "bfloat16"}[emb.Type.DType()]; ok {
		raw["torch_dtype"] = d
	}
	if err := ropeScaling(f, arch, raw); err != nil {
		return Config{}, nil, err
	}
	b, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		return Config{}, nil, err
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		field, rest, _ := strings.Cut(err.Error(), ": ")
		if key, ok := keyOf[field]; ok {
			return Config{}, nil, fmt.Errorf("%s: %s", key, rest)
		}
		return Config{}, nil, err
	}
	if _, ok := f.Info("rope_freqs.weight"); ok {
		if cfg.RopeScaling, err = llama3Scaling(f, cfg); err != nil {
			return Config{}, nil, err
		}
		scaling := cfg.RopeScaling
		raw["rope_scaling"] = map[string]any{"rope_type": "llama3", "factor": scaling.Factor, "low_freq_factor": scaling.LowFreqFactor,
			"high_freq_factor": scaling.HighFreqFactor, "original_max_position_embeddings": scaling.OriginalMaxPositions}
		if b, err = json.MarshalIndent(raw, "", "  "); err != nil {
			return Config{}, nil, err
		}
	}
	return cfg, b, nil
}

// metaNumber reads a finite numeric metadata value of any GGUF number type.
func metaNumber(key string, v any) (float64, error) {
	x, err := anyNumber(key, v)
	if err == nil && (math.IsNaN(x) || math.IsInf(x, 0)) {
		err = fmt.Errorf("%s: %v; expected a finite number", key, x)
	}
	return x, err
}

func anyNumber(key string, v any) (float64, error) {
	if i, ok := gguf.Int(v); ok {
		return float64(i), nil
	}
	switch x := v.(type) {
	case uint64: // beyond int64: the bounds checks refuse it by its size
		return float64(x), nil
	case float32:
		// The shortest decimal that rounds to x: the config.json value
		// (1e-5, not 9.9999997e-06) whenever it was written from one.
		return strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
	case float64:
		return x, nil
	}
	return 0, fmt.Errorf("%s: expected a number, got %T", key, v)
}

// ropeScaling reads linear rope scaling ({arch}.rope.scaling.type and
// .factor, or the older .rope.scale_linear) into raw's rope_scaling.
func ropeScaling(f *gguf.File, arch string, raw map[string]any) error {
	typ := "none"
	if v, ok := f.Lookup(arch + ".rope.scaling.type"); ok {
		s, isStr := v.(string)
		if !isStr {
			return fmt.Errorf("%s.rope.scaling.type: expected a string, got %T", arch, v)
		}
		typ = s
	}
	factorKey := arch + ".rope.scaling.factor"
	if _, ok := f.Lookup(arch + ".rope.scale_linear"); ok && typ == "none" {
		typ, factorKey = "linear", arch+".rope.scale_linear"
	}
	switch typ {
	case "none":
		return nil
	case "linear":
		v, ok := f.Lookup(factorKey)
		if !ok {
			return fmt.Errorf("%s: missing; linear rope scaling needs its factor", factorKey)
		}
		x, err := metaNumber(factorKey, v)
		if err != nil {
			return err
		}
		if x == 1 {
			return nil // llama.cpp writes factor 1 for no scaling
		}
		raw["rope_scaling"] = map[string]any{"type": "linear", "factor": x}
		return nil
	}
	return fmt.Errorf("%s.rope.scaling.type: %q is not supported; expected none or linear (or llama3's rope_freqs tensor)", arch, typ)
}

// llama3Scaling recovers Llama 3.x's rope_scaling from the rope_freqs tensor
// convert_hf_to_gguf writes in its place. The factors determine only ratios
// of the parameters, so the released models' low 1, high 4 with an original
// context from 8192 or the file's context length and powers of two, and
// the released factors or the largest divisor, are tried; one whose factors
// equal the file's bit for bit is taken; any other tensor is refused rather
// than approximated.
func llama3Scaling(f *gguf.File, cfg Config) (kernels.RopeScaling, error) {
	const name = "rope_freqs.weight"
	if cfg.ModelType != "llama" {
		return kernels.RopeScaling{}, fmt.Errorf("tensor %s: llama.cpp applies it only to llama-arch models, this is %s", name, cfg.ModelType)
	}
	got, err := f.Float32(name)
	if err != nil {
		return kernels.RopeScaling{}, err
	}
	if len(got) != cfg.HeadDim/2 {
		return kernels.RopeScaling{}, fmt.Errorf("tensor %s: %d values, expected head size / 2 = %d", name, len(got), cfg.HeadDim/2)
	}
	// The largest divisor is the factor when some frequency lies in the low
	// band, as with every real head size; with few frequencies it may not,
	// so the released factors come first.
	factors := []float64{8, 32, 16, 4, 2, float64(slices.Max(got))}
	origs := []float64{8192, float64(cfg.MaxPositions)}
	for p := 4; p <= 24; p++ {
		origs = append(origs, math.Ldexp(1, p))
	}
	for _, orig := range origs {
		for _, factor := range factors {
			c := cfg
			c.RopeScaling = kernels.RopeScaling{Type: "llama3", Factor: factor, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: orig}
			if slices.Equal(RopeFreqFactors(c), got) {
				return c.RopeScaling, nil
			}
		}
	}
	return kernels.RopeScaling{}, fmt.Errorf("tensor %s: per-frequency factors that no Llama 3 rope_scaling (low_freq_factor 1, high_freq_factor 4) gives; tune cannot reproduce them", name)
}

// OriginalModel names the model a GGUF checkpoint was converted from, for a
// PEFT adapter's base_model_name_or_path: the Hugging Face repository of
// general.base_model.0 (its repo_url, or organization/name) as
// convert_hf_to_gguf records it, with exact true; else general.name, with
// exact false (a display name, perhaps not a repository). It is "", false
// for a Hugging Face directory or a GGUF file that names nothing.
func OriginalModel(ck Checkpoint) (name string, exact bool) {
	g, ok := ck.(*ggufFile)
	if !ok {
		return "", false
	}
	str := func(key string) string {
		v, _ := g.f.Lookup(key)
		s, _ := v.(string)
		return strings.TrimSpace(s)
	}
	if u := str("general.base_model.0.repo_url"); u != "" {
		for _, p := range []string{"https://huggingface.co/", "http://huggingface.co/", "https://hf.co/"} {
			if r, ok := strings.CutPrefix(u, p); ok && r != "" {
				return strings.TrimSuffix(r, "/"), true
			}
		}
		return u, true
	}
	if n := str("general.base_model.0.name"); n != "" {
		if o := str("general.base_model.0.organization"); o != "" {
			return o + "/" + n, true
		}
	}
	return str("general.name"), false
}
