package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad: any bytes either fail with a list of one-line errors or give a config that
// validates and survives Dump and Load unchanged.
func FuzzLoad(f *testing.F) {
	shipped, _ := filepath.Glob("*.yaml")
	for _, p := range shipped {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add(doc())
	f.Add(doc("lora:", "  r: eight", "  rank: 3", "train:", "  lr: .inf"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := load("fuzz.yaml", data, nil, nil)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error is not a non-empty Errors: %T %v", err, err)
			}
			for _, e := range es {
				if e == nil || strings.ContainsAny(e.Error(), "\r\n") {
					t.Fatalf("bad error %q", e)
				}
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Load accepted a config that does not validate: %v", err)
		}
		checkDumpRoundTrip(t, cfg)
	})
}
