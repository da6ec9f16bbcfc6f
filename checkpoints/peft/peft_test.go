package peft

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadConfigForms: PEFT also writes target_modules as one string and
// layers_to_transform as one int; a wrong type names the field.
func TestReadConfigForms(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, WeightsFile), []byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '}, 0o644)
	write := func(cfg string) error {
		os.WriteFile(filepath.Join(dir, ConfigFile), []byte(cfg), 0o644)
		_, st, err := Read(dir)
		if st != nil {
			st.Close()
		}
		return err
	}
	if err := write(`{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ".*proj", "layers_to_transform": 3}`); err != nil {
		t.Fatalf("string target_modules and int layers_to_transform: %v", err)
	}
	err := write(`{"peft_type": "LORA", "r": "eight", "lora_alpha": 16}`)
	if err == nil || !strings.Contains(err.Error(), "field r: got a JSON string") {
		t.Fatalf("r as a string: %v", err)
	}
}
