package layout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

const module = "github.com/tune-dev/tune"

// pkg is what go list says of one package, without its tests.
type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

var listOnce = sync.OnceValues(func() (map[string]pkg, error) {
	if err := readSources(); err != nil {
		return nil, err
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(gobin, "list", "-json=ImportPath,Imports,Deps", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, &listError{err, stderr.String()}
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			return nil, err
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs, nil
})

// readSources reads every .go file and go.mod of the module, so that go test's
// cache (which sees the files a test opens, not those go list opens) runs
// these tests again when an import changes.
func readSources() error {
	root := filepath.Join("..", "..")
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".go") || d.Name() == "go.mod") {
			_, err = os.ReadFile(path)
		}
		return err
	})
}

type listError struct {
	err    error
	stderr string
}

func (e *listError) Error() string { return "go list: " + e.err.Error() + ": " + e.stderr }

// packages lists the module's packages (go list, test files excluded).
func packages(t *testing.T) map[string]pkg {
	t.Helper()
	pkgs, err := listOnce()
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages of %s; expected the whole module", len(pkgs), module)
	}
	return pkgs
}

// rel is a package's path inside the module ("" for an outside package).
func rel(path string) string {
	if path == module {
		return "."
	}
	r, ok := strings.CutPrefix(path, module+"/")
	if !ok {
		return ""
	}
	return r
}

// testOnly are the packages only tests may import: the runners of PyTorch
// and node (os/exec) that tune is compared with, and the file tests' shared
// checks.
func testOnly(path string) bool {
	r := rel(path)
	for _, p := range []string{"internal/testmodels", "internal/oracle", "internal/fixture", "internal/peer"} {
		if r == p || strings.HasPrefix(r, p+"/") {
			return true
		}
	}
	return false
}

// TestProductionNeverImportsTestCode: no package outside the test helpers links
// them, directly or through another package.
func TestProductionNeverImportsTestCode(t *testing.T) {
	pkgs := packages(t)
	for path, p := range pkgs {
		if testOnly(path) {
			continue
		}
		for _, d := range p.Deps {
			if testOnly(d) {
				t.Errorf("%s links the test package %s (directly or through its imports); production code must not", rel(path), rel(d))
			}
		}
	}
}

// TestBinaryRunsNoPrograms: of tune's own packages, only plan starts a
// program: nvidia-smi, which comes with the NVIDIA driver, to see the GPUs
// without linking CUDA (the test helpers run python3 and node through
// os/exec; the rest of the binary has no reason to). gopsutil links os/exec
// too, for the tools of other systems than Linux.
func TestBinaryRunsNoPrograms(t *testing.T) {
	pkgs := packages(t)
	tune, ok := pkgs[module+"/cmd/tune"]
	if !ok {
		t.Fatal("go list does not list cmd/tune")
	}
	if !slices.Contains(tune.Deps, "fmt") {
		t.Fatalf("cmd/tune's dependencies lack fmt: go list gave %d of them, not the whole closure", len(tune.Deps))
	}
	for path, p := range pkgs {
		if testOnly(path) || rel(path) == "plan" || rel(path) == "internal/layout" {
			continue
		}
		if slices.Contains(p.Imports, "os/exec") {
			t.Errorf("%s imports os/exec; only plan may (nvidia-smi)", rel(path))
		}
	}
}

// rank places each production package on the data path of README's layout
// section: a package imports only packages of a lower rank (or of its own
// folder tree, as checkpoints/hf imports checkpoints/safetensors), so
// dependencies run one way, from the command down to the leaves.
var rank = map[string]int{
	"internal/dtype": 0, // element types and half-float conversions
	"internal/mmap":  0,
	"internal/quant": 1, // ggml's block formats, below kernels and checkpoints/gguf

	"kernels":                  2,
	"checkpoints":              2,
	"checkpoints/safetensors":  2,
	"checkpoints/hf":           2,
	"checkpoints/peft":         2,
	"checkpoints/gguf":         2,
	"tokenizer/internal/jinja": 2, // the chat template engine, bounded
	"configs":                  2,

	"tokenizer":     3, // reads a GGUF file's vocabulary
	"model":         3,
	"model/builtin": 3,
	"lora":          4,
	"datasets":      5,
	"train":         6,
	"export":        7,
	"plan":          7, // hardware, and the estimates train's own sizing gives
	"cmd/tune":      8,
}

// tree is the top folder of a package path: checkpoints for checkpoints/hf.
func tree(r string) string {
	top, _, _ := strings.Cut(r, "/")
	if top == "internal" || top == "cmd" {
		return r
	}
	return top
}

// TestDependenciesRunOneWay: no package imports one above it on the data
// path (kernels and checkpoints at the bottom, then model, lora, datasets,
// train, export, cmd), and every production package has its place.
func TestDependenciesRunOneWay(t *testing.T) {
	for path, p := range packages(t) {
		r := rel(path)
		if testOnly(path) || r == "internal/layout" {
			continue
		}
		from, ok := rank[r]
		if !ok {
			t.Errorf("%s has no place in the layout: add it to rank in this test and to README's layout section", r)
			continue
		}
		for _, imp := range p.Imports {
			ri := rel(imp)
			if ri == "" || testOnly(imp) {
				continue // outside the module; test packages are TestProductionNeverImportsTestCode's
			}
			to, ok := rank[ri]
			if !ok {
				continue // reported for that package itself
			}
			if to >= from && tree(ri) != tree(r) {
				t.Errorf("%s (rank %d) imports %s (rank %d): dependencies must run down the data path", r, from, ri, to)
			}
		}
	}
}

// gorgonia says how the package links Gorgonia ("" when it does not): its
// direct imports of gorgonia.org, or how many it links through others.
func gorgonia(p pkg) string {
	var direct []string
	for _, d := range p.Imports {
		if strings.HasPrefix(d, "gorgonia.org/") {
			direct = append(direct, d)
		}
	}
	if len(direct) > 0 {
		return "imports " + strings.Join(direct, ", ")
	}
	n := 0
	for _, d := range p.Deps {
		if strings.HasPrefix(d, "gorgonia.org/") {
			n++
		}
	}
	if n > 0 {
		return fmt.Sprintf("links %d gorgonia.org packages through its imports", n)
	}
	return ""
}

// TestCheckpointsWithoutGorgonia: the file readers and writers link no graph
// library; they are functions over bytes.
func TestCheckpointsWithoutGorgonia(t *testing.T) {
	for path, p := range packages(t) {
		r := rel(path)
		if tree(r) != "checkpoints" && r != "internal/dtype" && r != "internal/mmap" {
			continue
		}
		if g := gorgonia(p); g != "" {
			t.Errorf("%s %s; checkpoints must not depend on Gorgonia", r, g)
		}
	}
}

// TestKernelsIsLeaf: kernels are functions over slices; the Gorgonia ops that
// call them belong to model.
func TestKernelsIsLeaf(t *testing.T) {
	p, ok := packages(t)[module+"/kernels"]
	if !ok {
		t.Fatal("go list does not list kernels")
	}
	if g := gorgonia(p); g != "" {
		t.Errorf("kernels %s; it must not depend on Gorgonia", g)
	}
}
