package configs

import (
	"embed"
	"os"
	"path/filepath"
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
	Name    string // what tune ls prints and tune run takes, e.g. demo
	File    string // its file name in configs/, e.g. demo.yaml
	Summary string // its first comment paragraph: what it is for
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
		out = append(out, ShippedConfig{Name: strings.TrimSuffix(e.Name(), ".yaml"), File: e.Name(), Summary: summary(b), YAML: b})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ShippedNamed finds a shipped config by its name (demo), its file name
// (demo.yaml) or its path in the repository (configs/demo.yaml).
func ShippedNamed(name string) (ShippedConfig, bool) {
	name = strings.TrimSuffix(strings.TrimPrefix(filepath.ToSlash(name), "configs/"), ".yaml")
	for _, c := range Shipped() {
		if c.Name == name {
			return c, true
		}
	}
	return ShippedConfig{}, false
}

// LoadShipped is Load for a shipped config; its messages name it by its
// file name (demo.yaml), and its output.dir defaults to runs/NAME.
func LoadShipped(c ShippedConfig, overrides []string) (*Config, error) {
	return load(c.File, c.YAML, overrides, os.Environ())
}

// summary is the first paragraph of comment lines, joined, without the file
// name prefix: what the config is for, in whole sentences.
func summary(b []byte) string {
	var parts []string
	for _, line := range strings.Split(string(b), "\n") {
		c, ok := strings.CutPrefix(strings.TrimSpace(line), "#")
		c = strings.TrimSpace(c)
		if !ok || c == "" {
			if len(parts) > 0 {
				break
			}
			continue
		}
		parts = append(parts, c)
	}
	s := strings.Join(parts, " ")
	if _, rest, found := strings.Cut(s, ".yaml: "); found {
		s = rest
	}
	return s
}
