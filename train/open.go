package train

import (
	"fmt"
	"path/filepath"

	"github.com/tune-dev/tune/checkpoints"
	"github.com/tune-dev/tune/model"
)

// Base is an opened base model: its memory-mapped checkpoint and the model over it.
type Base struct {
	Dir   *checkpoints.ModelDir
	Model *model.Model
}

// OpenBase opens a Hugging Face model directory and builds the model over its
// weights. Errors name the file and the field or tensor.
func OpenBase(dir string) (*Base, error) {
	md, err := checkpoints.OpenModelDir(dir)
	if err != nil {
		return nil, err
	}
	cfg, err := model.ParseConfig(md.Config)
	if err != nil {
		md.Close()
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "config.json"), err)
	}
	m, err := model.Load(cfg, md)
	if err != nil {
		md.Close()
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return &Base{Dir: md, Model: m}, nil
}

// Close unmaps the checkpoint; the model must not be used after.
func (b *Base) Close() error { return b.Dir.Close() }
