package peft

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"regexp/syntax"
	"strconv"

	"github.com/tune-dev/tune/checkpoints"
)

// Pattern is rank_pattern or alpha_pattern of adapter_config.json: module-name
// patterns and their values, in file order, because PEFT takes the first
// pattern that matches a module (get_pattern_key), so the order decides.
type Pattern []PatternEntry

// PatternEntry is one "pattern": value of a Pattern.
type PatternEntry struct {
	Key   string
	Value float64
}

// UnmarshalJSON reads a JSON object keeping its order; null is empty.
func (p *Pattern) UnmarshalJSON(b []byte) error {
	*p = nil
	if string(bytes.TrimSpace(b)) == "null" {
		return nil
	}
	entries, err := checkpoints.ObjectEntries(b)
	if err != nil {
		return err
	}
	for _, e := range entries {
		var v float64
		if err := json.Unmarshal(e.Val, &v); err != nil {
			return fmt.Errorf("%s: got %s, expected a number", strconv.Quote(e.Key), checkpoints.Snippet(e.Val))
		}
		*p = append(*p, PatternEntry{e.Key, v})
	}
	return nil
}

// MarshalJSON writes the object in order; empty is {} as PEFT writes it.
func (p Pattern) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range p {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(e.Key)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(e.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Key, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// ModuleLayout resolves a module's rank and alpha the way PEFT does when it
// builds the adapter: the first rank_pattern (alpha_pattern) key k with
// re.match(rf"(.*\.)?({k})$", name) gives the value, else r (lora_alpha).
// Names are module names inside the model: model.layers.3.self_attn.q_proj.
type ModuleLayout struct {
	r         int
	loraAlpha float64
	ranks     []compiledPattern
	alphas    []compiledPattern
}

type compiledPattern struct {
	re    *regexp.Regexp
	value float64
}

// Layout compiles the config's patterns. Keys are Python regular
// expressions; those RE2 cannot read (look-arounds, back-references) are
// errors rather than silently different matches.
func (c Config) Layout() (*ModuleLayout, error) {
	l := &ModuleLayout{r: c.R, loraAlpha: c.LoraAlpha}
	for _, p := range []struct {
		name    string
		pat     Pattern
		integer bool
		dst     *[]compiledPattern
	}{{"rank_pattern", c.RankPattern, true, &l.ranks}, {"alpha_pattern", c.AlphaPattern, false, &l.alphas}} {
		for _, e := range p.pat {
			if !(e.Value > 0) || math.IsInf(e.Value, 0) || (p.integer && (e.Value != math.Trunc(e.Value) || e.Value > MaxLoRARank)) {
				kind := "a positive number"
				if p.integer {
					kind = fmt.Sprintf("a positive integer at most %d", MaxLoRARank)
				}
				return nil, fmt.Errorf("%s[%s]: %v; expected %s", p.name, strconv.Quote(e.Key), e.Value, kind)
			}
			re, err := regexp.Compile(`^(?:.*\.)?(?:` + e.Key + `)$`)
			if err != nil {
				var se *syntax.Error
				msg := err.Error()
				if errors.As(err, &se) {
					msg = string(se.Code)
				}
				return nil, fmt.Errorf("%s: key %s is not a regular expression tune can match (%s)", p.name, strconv.Quote(e.Key), msg)
			}
			*p.dst = append(*p.dst, compiledPattern{re, e.Value})
		}
	}
	return l, nil
}

// Rank is the module's LoRA rank.
func (l *ModuleLayout) Rank(module string) int {
	return int(first(l.ranks, module, float64(l.r)))
}

// Alpha is the module's lora_alpha.
func (l *ModuleLayout) Alpha(module string) float64 {
	return first(l.alphas, module, l.loraAlpha)
}

func first(ps []compiledPattern, module string, def float64) float64 {
	for _, p := range ps {
		if p.re.MatchString(module) {
			return p.value
		}
	}
	return def
}
