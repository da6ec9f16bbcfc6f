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
