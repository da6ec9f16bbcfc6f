package configs

import (
	"embed"
	"sort"
	"strings"
)

// shipped holds the YAML configs of this folder, built into the binary so
// that `tune ls` works from any directory. It is read-only.
//
//go:embed *.yaml
var shipped embed.FS

// ShippedConfig is one config that comes with tune.
type ShippedConfig struct {
	Name    string // file name, e.g. demo.yaml
	Summary string // its first comment line: what it is for
	YAML    []byte
}

// Shipped lists the configs that come with tune, by name.
func Shipped() []ShippedConfig {
	entries, _ := shipped.ReadDir(".")
	var out []ShippedConfig
	for _, e := range entries {
		b, err := shipped.ReadFile(e.Name())
		if err != nil {
			continue
		}
		out = append(out, ShippedConfig{Name: e.Name(), Summary: summary(b), YAML: b})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// summary is the first non-empty comment line, without the file name prefix.
func summary(b []byte) string {
	for _, line := range strings.Split(string(b), "\n") {
		c, ok := strings.CutPrefix(strings.TrimSpace(line), "#")
		if c = strings.TrimSpace(c); ok && c != "" {
			if _, rest, found := strings.Cut(c, ".yaml: "); found {
				return rest
			}
			return c
		}
	}
	return ""
}
