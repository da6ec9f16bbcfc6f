package train

import (
	"github.com/tune-dev/tune/checkpoints"
	"github.com/tune-dev/tune/model"
)

// Base is an opened base model: its memory-mapped checkpoint and the model over it.
type Base struct {
	Dir   *checkpoints.ModelDir
	Model *model.Model
}

// OpenBase opens a Hugging Face model directory (see model.Open).
func OpenBase(dir string) (*Base, error) {
	m, md, err := model.Open(dir)
	if err != nil {
		return nil, err
	}
	return &Base{Dir: md, Model: m}, nil
}

// Close unmaps the checkpoint; the model must not be used after.
func (b *Base) Close() error { return b.Dir.Close() }
