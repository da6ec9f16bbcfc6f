package model

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tune-dev/tune/checkpoints/hf"
)

// IsGGUF reports whether path names a GGUF file rather than a Hugging Face
// directory: a regular file, or a path ending in .gguf (so that a missing
// file is reported as one).
func IsGGUF(path string) bool {
	if strings.EqualFold(filepath.Ext(path), ".gguf") {
		return true
	}
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// Open opens a Hugging Face model directory or a GGUF file (checkpoints
// reads and maps the files) and builds the model over its weights. Errors
// name the file and the field or tensor. The model is valid until the
// checkpoint is closed.
func Open(path string) (*Model, Checkpoint, error) {
	ck, cfg, err := OpenCheckpoint(path)
	if err != nil {
		return nil, nil, err
	}
	m, err := Load(cfg, ck)
	if err != nil {
		ck.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, ck, nil
}

// OpenCheckpoint opens a model's files and reads its configuration without
// building the model: the tensors' headers, for those that size a run.
func OpenCheckpoint(path string) (Checkpoint, Config, error) {
	if IsGGUF(path) {
		g, err := openGGUF(path)
		if err != nil {
			return nil, Config{}, err
		}
		return g, g.cfg, nil
	}
	md, err := hf.Open(path)
	if err != nil {
		return nil, Config{}, err
	}
	cfg, err := ParseConfig(md.Config)
	if err != nil {
		md.Close()
		return nil, Config{}, fmt.Errorf("%s: %w", filepath.Join(path, hf.ConfigFile), err)
	}
	return md, cfg, nil
}

// CopiedOnLoad reports whether Load copies tensor name into memory rather
// than viewing it in the mapping: a GGUF llama's q and k rows, which are
// put back in Hugging Face's order.
func CopiedOnLoad(ck Checkpoint, name string) bool {
	g, ok := ck.(*ggufFile)
	return ok && g.permutedHeads(name) > 0
}

// ReadConfig reads a model's configuration without building it: a Hugging
// Face directory's config.json, or a GGUF file's metadata.
func ReadConfig(path string) (Config, error) {
	if IsGGUF(path) {
		g, err := openGGUF(path)
		if err != nil {
			return Config{}, err
		}
		defer g.Close()
		return g.cfg, nil
	}
	p := filepath.Join(path, hf.ConfigFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return Config{}, err // names the file
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", p, err)
	}
	return cfg, nil
}

// OpenFinite is Open for a model to compute with: a weight that is NaN or
// infinite is an error naming its tensor (see CheckFinite). Open alone reads
// the headers, not every weight.
func OpenFinite(path string) (*Model, Checkpoint, error) {
	m, md, err := Open(path)
	if err != nil {
		return nil, nil, err
	}
	if err := CheckFinite(md); err != nil {
		md.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, md, nil
}
