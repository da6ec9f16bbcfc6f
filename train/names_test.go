package train

import (
	"slices"
	"testing"

	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
)

// TestConfigNamesAgree: configs validates lora.target_modules without importing
// model or lora (it stays a leaf), so its copy of the names must equal theirs.
func TestConfigNamesAgree(t *testing.T) {
	if configs.AllLinear != lora.AllLinear {
		t.Errorf("configs.AllLinear %q, lora.AllLinear %q", configs.AllLinear, lora.AllLinear)
	}
	if !slices.Equal(configs.TargetModules(), model.Projections()) {
		t.Errorf("configs.TargetModules() %v, model.Projections() %v", configs.TargetModules(), model.Projections())
	}
}
