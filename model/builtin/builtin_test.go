package builtin

import (
	"testing"

	"github.com/tune-dev/tune/configs"
)

// Every name the config accepts for builtin:NAME is one Named makes, with a
// shape that holds together.
func TestNamedCoversTheConfigsNames(t *testing.T) {
	for _, name := range configs.BuiltinModels() {
		s, ok := Named(name)
		if !ok {
			t.Fatalf("builtin:%s is accepted by configs but Named does not make it", name)
		}
		if s.Hidden%s.Heads != 0 || s.Heads%s.KVHeads != 0 || s.Vocab <= 0 || s.Layers <= 0 {
			t.Errorf("builtin:%s: inconsistent shape %+v", name, s)
		}
	}
	if _, ok := Named("huge"); ok {
		t.Error("Named made an unknown model")
	}
}
