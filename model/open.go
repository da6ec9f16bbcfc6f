package model

import (
	"fmt"
	"path/filepath"

	"github.com/tune-dev/tune/checkpoints/hf"
)

// Open opens a Hugging Face model directory (checkpoints reads and maps the
// files) and builds the model over its weights. Errors name the file and the
// field or tensor. The model is valid until the directory is closed.
func Open(dir string) (*Model, *hf.Dir, error) {
	md, err := hf.Open(dir)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := ParseConfig(md.Config)
	if err != nil {
		md.Close()
		return nil, nil, fmt.Errorf("%s: %w", filepath.Join(dir, hf.ConfigFile), err)
	}
	m, err := Load(cfg, md)
	if err != nil {
		md.Close()
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	return m, md, nil
}

// OpenFinite is Open for a model to compute with: a weight that is NaN or
// infinite is an error naming its tensor (see CheckFinite). Open alone reads
// the headers, not every weight.
func OpenFinite(dir string) (*Model, *hf.Dir, error) {
	m, md, err := Open(dir)
	if err != nil {
		return nil, nil, err
	}
	if err := CheckFinite(md); err != nil {
		md.Close()
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	return m, md, nil
}
