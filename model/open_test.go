package model_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
)

// TestOpenChecksLayerCount: num_hidden_layers must match the layers the
// weights hold, both ways, and the error names the missing or extra tensor.
func TestOpenChecksLayerCount(t *testing.T) {
	for _, c := range []struct {
		layers int
		want   string
	}{{3, "no tensor model.layers.2.input_layernorm.weight"}, {1, "more layers (model.layers.1."}} {
		dir := t.TempDir()
		if err := builtin.Write(dir, testmodels.Tiny("llama")); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "config.json")
		b, _ := os.ReadFile(path)
		var m map[string]any
		json.Unmarshal(b, &m)
		m["num_hidden_layers"] = c.layers
		b, _ = json.Marshal(m)
		os.WriteFile(path, b, 0o644)
		_, md, err := model.Open(dir)
		if err == nil {
			md.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("num_hidden_layers %d: error %v, want %q", c.layers, err, c.want)
		}
	}
}
