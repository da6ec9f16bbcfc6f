package checkpoints

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteDirAtomicReplacesOnlyItsOwn: an earlier output of the same kind is
// replaced whole (and readable by others); a directory holding anything else
// is left alone with an error.
func TestWriteDirAtomicReplacesOnlyItsOwn(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	write := func(content string) error {
		return WriteDirAtomic(dir, func(tmp string) error {
			return os.WriteFile(filepath.Join(tmp, "a.txt"), []byte(content), 0o644)
		})
	}
	if err := write("one"); err != nil {
		t.Fatal(err)
	}
	if err := write("two"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a.txt")); string(b) != "two" {
		t.Fatalf("a.txt = %q after the second write", b)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o755 {
		t.Errorf("directory mode %v, want 0755", st.Mode().Perm())
	}
	os.WriteFile(filepath.Join(dir, "thesis.txt"), []byte("mine"), 0o644)
	err := write("three")
	if err == nil || !strings.Contains(err.Error(), "thesis.txt") {
		t.Fatalf("replacing a directory with a foreign file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "thesis.txt")); string(b) != "mine" {
		t.Fatal("the user's file is gone")
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".out.tmp-*")); len(left) != 0 {
		t.Errorf("temporary directories left: %v", left)
	}
}

// TestReadPEFTConfigForms: PEFT also writes target_modules as one string and
// layers_to_transform as one int; a wrong type names the field.
func TestReadPEFTConfigForms(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, PEFTWeightsFile), []byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '}, 0o644)
	write := func(cfg string) error {
		os.WriteFile(filepath.Join(dir, PEFTConfigFile), []byte(cfg), 0o644)
		_, st, err := ReadPEFT(dir)
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
