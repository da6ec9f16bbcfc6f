package configs

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestShippedConfigs loads every YAML config shipped in this folder. Validation does
// not need the model directory or the data to exist, so they load as shipped; an
// override of model.path is exercised too.
func TestShippedConfigs(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"demo.yaml", "smollm2-135m-cpu.yaml", "qwen2.5-0.5b-cpu.yaml", "llama3.2-1b.yaml", "coder-7b.yaml"}
	for _, w := range want {
		found := false
		for _, f := range files {
			found = found || f == w
		}
		if !found {
			t.Errorf("%s is not shipped", w)
		}
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			// Each starts with comment lines: what, hardware, time, what to set.
			var head strings.Builder
			sc := bufio.NewScanner(bytes.NewReader(data))
			for sc.Scan() && strings.HasPrefix(sc.Text(), "#") {
				head.WriteString(sc.Text() + "\n")
			}
			for _, word := range []string{"Hardware:", "Time:", "You set:"} {
				if !strings.Contains(head.String(), word) {
					t.Errorf("the opening comment lacks %q", word)
				}
			}
			cfg, err := Load(f, nil)
			if err != nil {
				t.Fatalf("as shipped:\n%v", err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(cfg.Model.Path, "builtin:") {
				cfg, err = Load(f, []string{"model.path=" + t.TempDir()})
				if err != nil {
					t.Fatalf("with model.path overridden:\n%v", err)
				}
			}
			if !strings.Contains(filepath.ToSlash(cfg.Output.Dir), "/runs/") {
				t.Errorf("output.dir %s is not under runs/", cfg.Output.Dir)
			}
		})
	}
}

// TestDemoConfig: the README's first command needs nothing downloaded.
func TestDemoConfig(t *testing.T) {
	cfg, err := Load("demo.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Model.Path != BuiltinModel || cfg.Data.Train != BuiltinData {
		t.Errorf("demo.yaml trains %s on %s; it must use the built-in model and data", cfg.Model.Path, cfg.Data.Train)
	}
}
