package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tune-dev/tune/checkpoints/safetensors"
)

// File names of a Hugging Face model directory.
const (
	ConfigFile            = "config.json"
	SingleSafetensorsFile = "model.safetensors"
	SafetensorsIndexFile  = "model.safetensors.index.json"
)

// ShardFile is the name transformers gives shard k (from 0) of n:
// model-00001-of-00003.safetensors.
func ShardFile(k, n int) string { return fmt.Sprintf("model-%05d-of-%05d.safetensors", k+1, n) }

// Dir is an opened Hugging Face model directory: config.json plus the
// memory-mapped safetensors files, looked up as one namespace of tensors.
type Dir struct {
	Path   string
	Config []byte // raw config.json; the model package interprets it

	shards []*safetensors.File
	where  map[string]*safetensors.File
	names  []string // sorted
}

// Open opens dir the way transformers loads it: config.json, then
// model.safetensors if present, else model.safetensors.index.json and the
// shards its weight_map names, else every *.safetensors file in dir. A tensor
// name found in two files is an error (which copy would win is unclear), as
// is a weight_map entry whose shard lacks the tensor.
func Open(dir string) (*Dir, error) {
	cfgPath := filepath.Join(dir, ConfigFile)
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		// The path once: "model dir D: config.json: no such file or directory".
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Path == cfgPath {
			err = fmt.Errorf("%s: %w", ConfigFile, pe.Err)
		}
		return nil, fmt.Errorf("model dir %s: %w", dir, err)
	}
	if !json.Valid(cfg) {
		return nil, fmt.Errorf("model dir %s: %s is not valid JSON", dir, ConfigFile)
	}
	m := &Dir{Path: dir, Config: cfg, where: map[string]*safetensors.File{}}
	if err := m.open(); err != nil {
		m.Close()
		return nil, fmt.Errorf("model dir %s: %w", dir, err)
	}
	return m, nil
}

func (m *Dir) open() error {
	single := filepath.Join(m.Path, SingleSafetensorsFile)
	if _, err := os.Stat(single); err == nil {
		return m.addShard(single)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}

	indexPath := filepath.Join(m.Path, SafetensorsIndexFile)
	raw, err := os.ReadFile(indexPath)
	if err == nil {
		return m.openIndexed(indexPath, raw)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}

	entries, err := os.ReadDir(m.Path)
	if err != nil {
		return err
	}
	var files []string
	for _, e := range entries {
		// Skip hidden files: WriteFileAtomic's temporaries start with a dot.
		if n := e.Name(); strings.HasSuffix(n, ".safetensors") && !strings.HasPrefix(n, ".") {
			files = append(files, filepath.Join(m.Path, n))
		}
	}
	if len(files) == 0 {
		return fmt.Errorf("no %s, %s or other *.safetensors file", SingleSafetensorsFile, SafetensorsIndexFile)
	}
	for _, f := range files { // ReadDir sorts by name
		if err := m.addShard(f); err != nil {
			return err
		}
	}
	return nil
}

func (m *Dir) openIndexed(indexPath string, raw []byte) error {
	var index struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &index); err != nil {
		return fmt.Errorf("%s: %w", indexPath, err)
	}
	if len(index.WeightMap) == 0 {
		return fmt.Errorf("%s: weight_map is missing or empty", indexPath)
	}
	var shardNames []string
	for name, shard := range index.WeightMap {
		// A corrupt or hostile index must not point outside the directory.
		if !filepath.IsLocal(shard) {
			return fmt.Errorf("%s: tensor %q: shard %q is not a file inside the directory", indexPath, name, shard)
		}
		shardNames = append(shardNames, shard)
	}
	slices.Sort(shardNames)
	shardNames = slices.Compact(shardNames)
	byName := map[string]*safetensors.File{}
	for _, sn := range shardNames {
		if err := m.addShard(filepath.Join(m.Path, sn)); err != nil {
			return fmt.Errorf("shard listed in %s: %w", SafetensorsIndexFile, err)
		}
		byName[sn] = m.shards[len(m.shards)-1]
	}
	names := make([]string, 0, len(index.WeightMap))
	for name := range index.WeightMap {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		shard := index.WeightMap[name]
		if _, ok := byName[shard].Info(name); !ok {
			return fmt.Errorf("%s maps tensor %q to %s, which does not contain it", SafetensorsIndexFile, name, shard)
		}
	}
	return nil
}

// addShard opens one file and merges its names, refusing duplicates.
func (m *Dir) addShard(path string) error {
	s, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	m.shards = append(m.shards, s)
	names := s.Names()
	for _, name := range names {
		if prev, dup := m.where[name]; dup {
			return fmt.Errorf("tensor %q is in both %s and %s", name, filepath.Base(prev.Path()), filepath.Base(path))
		}
		m.where[name] = s
	}
	m.names = append(m.names, names...)
	slices.Sort(m.names)
	return nil
}

// Names lists every tensor in the directory, sorted.
func (m *Dir) Names() []string { return slices.Clone(m.names) }

// Has reports whether the directory holds a tensor called name.
func (m *Dir) Has(name string) bool {
	_, ok := m.where[name]
	return ok
}

// Info describes a tensor without touching its data.
func (m *Dir) Info(name string) (safetensors.TensorInfo, bool) {
	s, ok := m.where[name]
	if !ok {
		return safetensors.TensorInfo{}, false
	}
	return s.Info(name)
}

// Tensor returns the named tensor, its Data mapped from whichever shard holds
// it; it is valid until Close.
func (m *Dir) Tensor(name string) (safetensors.Tensor, error) {
	s, ok := m.where[name]
	if !ok {
		return safetensors.Tensor{}, fmt.Errorf("model dir %s: no tensor %q", m.Path, name)
	}
	return s.Tensor(name)
}

// ConfigJSON is the raw config.json.
func (m *Dir) ConfigJSON() []byte { return m.Config }

// Files lists the safetensors files opened, in the order they were opened.
func (m *Dir) Files() []string {
	out := make([]string, len(m.shards))
	for i, s := range m.shards {
		out[i] = s.Path()
	}
	return out
}

// Close unmaps every file; tensors obtained earlier become invalid.
func (m *Dir) Close() error {
	var errs []error
	for _, s := range m.shards {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
