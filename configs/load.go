package configs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts the environment variables Load reads: TUNE_ + the upper-cased
// path with dots as underscores (TUNE_TRAIN_LR, TUNE_LORA_TARGET_MODULES). Variables
// that name no key are ignored.
const EnvPrefix = "TUNE_"

// EnvName is the environment variable for a field path.
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// Load reads the YAML config at path ("" for none: defaults and overrides only),
// applies the defaults, the TUNE_ environment variables and the key.path=value
// overrides, decodes strictly, fills output.dir, resolves relative paths against the
// working directory and validates. On failure it returns Errors listing every
// problem found, each with its source, line and field path.
func Load(path string, overrides []string) (*Config, error) {
	var data []byte
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, Errors{{File: path, Msg: "cannot read: " + err.Error()}}
		}
		data = b
	}
	return load(path, data, overrides, os.Environ())
}

// schema is Fields() indexed; built per call, never shared.
type schema struct {
	fields   []Field
	byPath   map[string]Field
	order    map[string]int
	sections []string
	leaves   map[string][]string
}

func newSchema() *schema {
	s := &schema{fields: Fields(), byPath: map[string]Field{}, order: map[string]int{}, leaves: map[string][]string{}}
	for i, f := range s.fields {
		s.byPath[f.Path] = f
		s.order[f.Path] = i
		sec, leaf, _ := strings.Cut(f.Path, ".")
		if _, ok := s.leaves[sec]; !ok {
			s.sections = append(s.sections, sec)
		}
		s.leaves[sec] = append(s.leaves[sec], leaf)
	}
	return s
}

func (s *schema) isSection(name string) bool {
	_, ok := s.leaves[name]
	return ok
}

// origin is where a field's effective value came from.
type origin struct {
	label string // "override k=v" or "env K=V"; "" for the file or the default
	line  int    // line in the file, when it came from the file
}

// load is Load with the file's bytes and the environment given.
func load(file string, data []byte, overrides, environ []string) (*Config, error) {
	s := newSchema()
	var errs Errors
	bad := map[string]bool{} // paths with a value of the wrong type
	origins := map[string]origin{}

	fileVals, lines, ferrs, fatal := s.parseYAML(file, data)
	errs = append(errs, ferrs...)
	if fatal {
		return nil, errs
	}

	v := viper.New()
	for _, f := range s.fields {
		v.SetDefault(f.Path, f.Default)
	}

	nested := map[string]any{}
	for _, f := range s.fields {
		raw, ok := fileVals[f.Path]
		if !ok {
			continue
		}
		val, msg := convert(f, raw)
		if msg != "" {
			errs = append(errs, convertError(file, lines[f.Path], f.Path, msg))
			bad[f.Path] = true
			continue
		}
		setNested(nested, f.Path, val)
		origins[f.Path] = origin{line: lines[f.Path]}
	}
	if err := v.MergeConfigMap(nested); err != nil {
		return nil, append(errs, &FieldError{File: file, Msg: "internal error: " + err.Error()})
	}

	env := map[string]string{}
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = val
		}
	}
	for _, f := range s.fields {
		name := EnvName(f.Path)
		text, ok := env[name]
		if !ok {
			continue
		}
		label := "env " + name + "=" + text
		val, msg := parseValue(f, text)
		if msg != "" {
			errs = append(errs, convertError(label, 0, f.Path, msg))
			bad[f.Path] = true
			continue
		}
		v.Set(f.Path, val)
		origins[f.Path] = origin{label: label}
	}

	for _, o := range overrides {
		label := "override " + o
		key, text, ok := strings.Cut(o, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			errs = append(errs, &FieldError{File: label, Msg: "malformed override: expected key.path=value, e.g. lora.r=16"})
			continue
		}
		f, known := s.byPath[key]
		if !known {
			errs = append(errs, &FieldError{File: label, Path: key, Msg: s.overrideKeyMsg(key)})
			continue
		}
		val, msg := parseValue(f, text)
		if msg != "" {
			errs = append(errs, convertError(label, 0, key, msg))
			bad[key] = true
			continue
		}
		v.Set(key, val)
		origins[key] = origin{label: label}
	}

	var cfg Config
	if err := v.UnmarshalExact(&cfg); err != nil {
		return nil, append(errs, &FieldError{File: file, Msg: "internal error: " + oneLine(err.Error())})
	}
	cfg.Path = file
	cfg.origins = origins
	if len(cfg.LoRA.Layers) == 0 {
		cfg.LoRA.Layers = nil
	}
	normalizeData(&cfg.Data)
	if cfg.Output.Dir == "" {
		cfg.Output.Dir = DefaultOutputDir(file)
	}
	for _, p := range []struct {
		path string
		s    *string
	}{
		{"model.path", &cfg.Model.Path},
		{"data.train", &cfg.Data.Train},
		{"data.val", &cfg.Data.Val},
		{"lora.init_from", &cfg.LoRA.InitFrom},
		{"output.dir", &cfg.Output.Dir},
	} {
		if err := resolvePath(p.s); err != nil {
			errs = append(errs, &FieldError{File: file, Path: p.path, Msg: "cannot resolve against the working directory: " + err.Error()})
		}
	}
	for i := range cfg.Data.Sources {
		if err := resolvePath(&cfg.Data.Sources[i].Path); err != nil {
			errs = append(errs, &FieldError{File: file, Path: "data.sources[" + strconv.Itoa(i) + "].path", Msg: "cannot resolve against the working directory: " + err.Error()})
		}
	}

	if verr := cfg.Validate(); verr != nil {
		var vs Errors
		if errors.As(verr, &vs) {
			for _, e := range vs {
				if bad[basePath(e.Path)] {
					continue // its own type error already says what is wrong
				}
				if e.Path == "data.train" && bad["data.sources"] {
					continue // "required": data.sources was given, wrongly
				}
				o, set := origins[basePath(e.Path)]
				switch {
				case set && o.label != "":
					e.File, e.Line = o.label, 0
				case set:
					e.File, e.Line = file, o.line
				default:
					e.File, e.Line = file, 0
				}
				errs = append(errs, e)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &cfg, nil
}

// resolvePath makes a relative path absolute against the working directory,
// leaving "" and builtin: values alone.
func resolvePath(p *string) error {
	if *p == "" || strings.HasPrefix(*p, builtinPre) || filepath.IsAbs(*p) {
		return nil
	}
	abs, err := filepath.Abs(*p)
	if err != nil {
		return err
	}
	*p = abs
	return nil
}

// overrideKeyMsg explains why an override key is not a field.
func (s *schema) overrideKeyMsg(key string) string {
	parts := strings.Split(key, ".")
	if len(parts) == 1 && s.isSection(key) {
		return "is a section, not a value; set one of its keys, e.g. " + key + "." + s.leaves[key][0] + "=..."
	}
	if !s.isSection(parts[0]) {
		sug := s.suggest("", parts[0])
		if len(parts) == 2 && s.isSection(sug) {
			if _, ok := s.byPath[sug+"."+parts[1]]; ok {
				sug += "." + parts[1]
			}
		}
		return unknownKey(sug)
	}
	if len(parts) > 2 {
		if _, ok := s.byPath[parts[0]+"."+parts[1]]; ok {
			return unknownKey(parts[0] + "." + parts[1])
		}
	}
	return unknownKey(s.suggest(parts[0], parts[1]))
}

// yamlError splits yaml.v3's "yaml: line N: problem" into N and the problem.
func yamlError(err error) (int, string) {
	msg := oneLine(err.Error())
	msg = strings.TrimPrefix(msg, "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, tail, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				return n, tail
			}
		}
	}
	return 0, msg
}

// parseYAML reads the file into leaf values by path, with the line of each key.
// fatal means the file could not be parsed at all.
func (s *schema) parseYAML(file string, data []byte) (vals map[string]any, lines map[string]int, errs Errors, fatal bool) {
	vals, lines = map[string]any{}, map[string]int{}
	if len(bytes.TrimSpace(data)) == 0 {
		return vals, lines, nil, false
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return vals, lines, nil, false
		}
		line, msg := yamlError(err)
		return nil, nil, Errors{{File: file, Line: line, Msg: "invalid YAML: " + msg}}, true
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, nil, Errors{{File: file, Line: extra.Line, Msg: "invalid config: more than one YAML document"}}, true
	} else if !errors.Is(err, io.EOF) {
		line, msg := yamlError(err)
		return nil, nil, Errors{{File: file, Line: line, Msg: "invalid YAML: " + msg}}, true
	}

	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return vals, lines, nil, false
		}
		root = root.Content[0]
	}
	root = deref(root)
	if root == nil || isNull(root) {
		return vals, lines, nil, false
	}
	if root.Kind != yaml.MappingNode {
		return nil, nil, Errors{{File: file, Line: root.Line, Msg: "expected a mapping of sections (" + strings.Join(s.sections, ", ") + "), got " + describeNode(root)}}, true
	}

	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, val := root.Content[i], deref(root.Content[i+1])
		name, ok := s.keyName(file, "", k, &errs)
		if !ok {
			continue
		}
		if !s.isSection(name) {
			errs = append(errs, &FieldError{File: file, Line: k.Line, Path: name, Msg: unknownKey(s.suggest("", name))})
			continue
		}
		if first, dup := seen[name]; dup {
			errs = append(errs, &FieldError{File: file, Line: k.Line, Path: name, Msg: "duplicate key (first at line " + strconv.Itoa(first) + ")"})
			continue
		}
		seen[name] = k.Line
		if val == nil || isNull(val) {
			continue
		}
		if val.Kind != yaml.MappingNode {
			errs = append(errs, &FieldError{File: file, Line: k.Line, Path: name, Msg: "expected a mapping of " + name + " keys, got " + describeNode(val)})
			continue
		}
		for j := 0; j+1 < len(val.Content); j += 2 {
			lk, lv := val.Content[j], val.Content[j+1]
			leaf, ok := s.keyName(file, name+".", lk, &errs)
			if !ok {
				continue
			}
			path := name + "." + leaf
			f, known := s.byPath[path]
			if !known {
				errs = append(errs, &FieldError{File: file, Line: lk.Line, Path: path, Msg: unknownKey(s.suggest(name, leaf))})
				continue
			}
			if first, dup := seen[path]; dup {
				errs = append(errs, &FieldError{File: file, Line: lk.Line, Path: path, Msg: "duplicate key (first at line " + strconv.Itoa(first) + ")"})
				continue
			}
			seen[path] = lk.Line
			if d := deref(lv); d == nil || isNull(d) {
				continue // null: the default
			}
			if f.Type == TypeString && lv.Kind == yaml.ScalarNode && lv.Tag == "!!timestamp" {
				vals[path], lines[path] = lv.Value, lk.Line
				continue
			}
			var x any
			if err := lv.Decode(&x); err != nil {
				_, msg := yamlError(err)
				errs = append(errs, &FieldError{File: file, Line: lk.Line, Path: path, Msg: "invalid value: " + msg})
				continue
			}
			vals[path], lines[path] = x, lk.Line
		}
	}
	return vals, lines, errs, false
}

// keyName returns a mapping key's name, or records why it cannot be one.
func (s *schema) keyName(file, prefix string, k *yaml.Node, errs *Errors) (string, bool) {
	if k.Kind != yaml.ScalarNode {
		*errs = append(*errs, &FieldError{File: file, Line: k.Line, Path: strings.TrimSuffix(prefix, "."), Msg: "keys must be plain names, got " + describeNode(k)})
		return "", false
	}
	if k.Tag == "!!merge" {
		*errs = append(*errs, &FieldError{File: file, Line: k.Line, Path: prefix + k.Value, Msg: "merge keys (<<) are not supported; write the keys out"})
		return "", false
	}
	return k.Value, true
}

// deref follows an alias to its anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 8; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!str" {
			return quote(n.Value)
		}
		return n.Value
	}
	return "an alias"
}

// parseValue reads an override or environment value: YAML, except that a string field
// takes the text verbatim unless it is quoted, and an empty text clears a string or a
// list.
func parseValue(f Field, text string) (any, string) {
	trimmed := strings.TrimSpace(text)
	if f.Type == TypeString && !strings.HasPrefix(trimmed, `"`) && !strings.HasPrefix(trimmed, `'`) {
		return text, ""
	}
	if trimmed == "" {
		switch f.Type {
		case TypeStrings:
			return []string{}, ""
		case TypeInts:
			return []int{}, ""
		case TypeStringMap:
			return map[string]string{}, ""
		case TypeSources:
			return []Source{}, ""
		}
		return nil, "expected " + expected(f.Type) + ", got nothing"
	}
	var raw any
	if err := yaml.Unmarshal([]byte(text), &raw); err != nil {
		_, msg := yamlError(err)
		return nil, "invalid YAML value: " + msg
	}
	if raw == nil {
		return nil, "expected " + expected(f.Type) + ", got nothing"
	}
	return convert(f, raw)
}

// convert checks a decoded value against the field's type and returns it as exactly
// that Go type, or a one-line message.
func convert(f Field, raw any) (any, string) {
	fail := func() (any, string) { return nil, "expected " + expected(f.Type) + ", got " + describe(raw) }
	switch f.Type {
	case TypeInt:
		if n, ok := toInt(raw); ok {
			return n, ""
		}
		return fail()
	case TypeUint:
		switch x := raw.(type) {
		case uint64:
			return x, ""
		case float64:
			if x >= 0 && x == math.Trunc(x) && x < 1<<53 {
				return uint64(x), ""
			}
		}
		if n, ok := toInt(raw); ok && n >= 0 {
			return uint64(n), ""
		}
		return fail()
	case TypeFloat:
		var x float64
		switch v := raw.(type) {
		case int:
			x = float64(v)
		case int64:
			x = float64(v)
		case uint64:
			x = float64(v)
		case float64:
			x = v
		default:
			return fail()
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, "expected a finite number, got " + describe(raw)
		}
		return x, ""
	case TypeBool:
		if b, ok := raw.(bool); ok {
			return b, ""
		}
		return fail()
	case TypeString:
		if s, ok := raw.(string); ok {
			return s, ""
		}
		return fail()
	case TypeStrings:
		switch x := raw.(type) {
		case string:
			return splitList(x), ""
		case []string:
			return append([]string{}, x...), ""
		case []any:
			out := make([]string, 0, len(x))
			for _, e := range x {
				s, ok := e.(string)
				if !ok {
					return nil, "expected " + expected(f.Type) + ", got " + describe(e) + " in the list"
				}
				out = append(out, s)
			}
			return out, ""
		}
		return fail()
	case TypeInts:
		switch x := raw.(type) {
		case string:
			var out []int
			for _, s := range splitList(x) {
				n, err := strconv.Atoi(s)
				if err != nil {
					return fail()
				}
				out = append(out, n)
			}
			return out, ""
		case []int:
			return append([]int{}, x...), ""
		case []any:
			out := make([]int, 0, len(x))
			for _, e := range x {
				n, ok := toInt(e)
				if !ok {
					return nil, "expected " + expected(f.Type) + ", got " + describe(e) + " in the list"
				}
				out = append(out, n)
			}
			return out, ""
		}
		if n, ok := toInt(raw); ok {
			return []int{n}, ""
		}
		return fail()
	case TypeStringMap:
		return convertStringMap(raw)
	case TypeSources:
		return convertSources(raw)
	}
	return nil, "internal error: unknown field type " + f.Type
}

// convertStringMap reads {a: b, ...}, [a=b, ...] or "a=b,c=d".
func convertStringMap(raw any) (any, string) {
	const want = "expected a mapping of names (e.g. {instruction: question}) or a=b pairs, got "
	out := map[string]string{}
	pair := func(s string) string {
		k, v, ok := strings.Cut(s, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return want + quote(s)
		}
		out[k] = v
		return ""
	}
	switch x := raw.(type) {
	case map[string]string:
		for k, v := range x {
			out[k] = v
		}
		return out, ""
	case map[string]any:
		for k, v := range x {
			s, ok := v.(string)
			if !ok {
				return nil, "[" + k + "]: expected a name, got " + describe(v)
			}
			out[k] = s
		}
		return out, ""
	case string:
		for _, p := range splitList(x) {
			if msg := pair(p); msg != "" {
				return nil, msg
			}
		}
		return out, ""
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, want + describe(e) + " in the list"
			}
			if msg := pair(s); msg != "" {
				return nil, msg
			}
		}
		return out, ""
	}
	return nil, want + describe(raw)
}

// convertSources reads data.sources: a list of mappings with SourceKeys().
func convertSources(raw any) (any, string) {
	const want = "expected a list of sources, e.g. [{path: a.jsonl}, {path: b.parquet, weight: 2}], got "
	switch x := raw.(type) {
	case []Source:
		out := make([]Source, len(x))
		for i, s := range x {
			out[i] = s
			if s.Fields != nil {
				out[i].Fields = map[string]string{}
				for k, v := range s.Fields {
					out[i].Fields[k] = v
				}
			}
		}
		return out, ""
	case []any:
		out := make([]Source, 0, len(x))
		for i, e := range x {
			at := "[" + strconv.Itoa(i) + "]"
			m, ok := e.(map[string]any)
			if !ok {
				return nil, at + ": expected a mapping with path (and format, weight, fields), got " + describe(e)
			}
			src := Source{Weight: 1}
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				v := m[k]
				if v == nil {
					continue // null: the default
				}
				switch k {
				case "path", "format":
					s, ok := v.(string)
					if !ok {
						return nil, at + "." + k + ": expected a string, got " + describe(v)
					}
					if k == "path" {
						src.Path = s
					} else {
						src.Format = s
					}
				case "weight":
					w, msg := convert(Field{Type: TypeFloat}, v)
					if msg != "" {
						return nil, at + ".weight: " + msg
					}
					src.Weight = w.(float64)
				case "fields":
					f, msg := convertStringMap(v)
					if msg != "" {
						if strings.HasPrefix(msg, "[") {
							return nil, at + ".fields" + msg
						}
						return nil, at + ".fields: " + msg
					}
					src.Fields = f.(map[string]string)
				default:
					msg := at + ": unknown key " + quote(k) + "; a source has " + strings.Join(SourceKeys(), ", ")
					if n := nearest(k, SourceKeys()); levenshtein(k, n) <= max(2, len(k)/3) {
						msg += "; did you mean " + n + "?"
					}
					return nil, msg
				}
			}
			out = append(out, src)
		}
		return out, ""
	}
	return nil, want + describe(raw)
}

// convertError is the error of a value that convert refused. A message that
// starts with "[i]..." names a part of the value: it extends the path.
func convertError(file string, line int, path, msg string) *FieldError {
	if strings.HasPrefix(msg, "[") {
		if sub, rest, ok := strings.Cut(msg, ": "); ok {
			return &FieldError{File: file, Line: line, Path: path + sub, Msg: rest}
		}
	}
	return &FieldError{File: file, Line: line, Path: path, Msg: msg}
}

// basePath is a field path without its index or key suffix:
// data.sources[1].weight -> data.sources.
func basePath(p string) string {
	if i := strings.IndexByte(p, '['); i >= 0 {
		return p[:i]
	}
	return p
}

// normalizeData makes empty lists and maps nil, so that a config equals its
// Dump read back.
func normalizeData(d *Data) {
	if len(d.Sources) == 0 {
		d.Sources = nil
	}
	if len(d.Fields) == 0 {
		d.Fields = nil
	}
	for i := range d.Sources {
		if len(d.Sources[i].Fields) == 0 {
			d.Sources[i].Fields = nil
		}
	}
}

// splitList splits "a, b,c" into its trimmed, non-empty parts.
func splitList(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 && strings.TrimSpace(s) != "" {
		out = append(out, s)
	}
	return out
}

func toInt(raw any) (int, bool) {
	switch x := raw.(type) {
	case int:
		return x, true
	case int64:
		if x >= math.MinInt && x <= math.MaxInt {
			return int(x), true
		}
	case uint64:
		if x <= math.MaxInt {
			return int(x), true
		}
	case float64:
		// 1e3 is an integer written as a float; 1.5 is not.
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int(x), true
		}
	}
	return 0, false
}

func expected(typ string) string {
	switch typ {
	case TypeInt:
		return "an integer"
	case TypeUint:
		return "a non-negative integer"
	case TypeFloat:
		return "a number"
	case TypeBool:
		return "true or false"
	case TypeString:
		return "a string"
	case TypeStrings:
		return "a name or a list of names"
	case TypeInts:
		return "an integer or a list of integers"
	case TypeStringMap:
		return "a mapping of names"
	case TypeSources:
		return "a list of sources"
	}
	return typ
}

// describe renders a decoded value for a message.
func describe(raw any) string {
	switch x := raw.(type) {
	case nil:
		return "nothing"
	case string:
		return quote(x)
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float64:
		return fmtFloat(x)
	case []any, []string, []int:
		return "a list"
	case map[string]any, map[any]any:
		return "a mapping"
	case time.Time:
		return x.Format(time.RFC3339)
	}
	return "a value of an unsupported type"
}

// quote is strconv.Quote, shortened for long strings.
func quote(s string) string {
	const max = 60
	if r := []rune(s); len(r) > max {
		return strconv.Quote(string(r[:max])) + "..."
	}
	return strconv.Quote(s)
}

func fmtFloat(x float64) string {
	return strconv.FormatFloat(x, 'g', -1, 64)
}
