package plan

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/model/builtin"
)

// shippedShapes are the shapes of the models the shipped configs name
// (their config.json on the Hugging Face hub), as built-in specs.
func shippedShapes() map[string]builtin.Spec {
	smol, _ := builtin.Named("smollm2-135m")
	qwen, _ := builtin.Named("qwen2.5-0.5b")
	return map[string]builtin.Spec{
		"demo":             builtin.Demo(),
		"smollm2-135m-cpu": smol,
		"qwen2.5-0.5b-cpu": qwen,
		// meta-llama/Llama-3.2-1B-Instruct
		"llama3.2-1b": {Arch: "llama", Hidden: 2048, Intermediate: 8192, Layers: 16, Heads: 32, KVHeads: 8, HeadDim: 64, Vocab: 128256, Tied: true,
			RopeTheta: 500000, RopeScaling: map[string]any{"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
			DType: dtype.BF16, MaxPositions: 131072},
		// Qwen/Qwen2.5-Coder-7B-Instruct
		"coder-7b": {Arch: "qwen2", Hidden: 3584, Intermediate: 18944, Layers: 28, Heads: 28, KVHeads: 4, Vocab: 152064, RopeTheta: 1000000, DType: dtype.BF16, MaxPositions: 32768},
	}
}

// writeShape writes a model directory of spec's shape whose safetensors file
// has the real header and size but no data (a sparse file): planning reads
// headers only, so a 7B model costs nothing on disk.
func writeShape(t *testing.T, dir string, spec builtin.Spec) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := json.Marshal(spec.Config())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	header := map[string]any{}
	var size int64
	for _, ti := range spec.Infos() {
		header[ti.Name] = map[string]any{"dtype": string(ti.DType), "shape": ti.Shape, "data_offsets": []int64{ti.Begin, ti.End}}
		size = max(size, ti.End)
	}
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	f, err := os.Create(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(h)))
	if _, err := f.Write(append(n[:], h...)); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(8 + int64(len(h)) + size); err != nil {
		t.Fatal(err)
	}
}

// statedRAM is the "N GB of (free) RAM" of a config's Hardware note.
var statedRAM = regexp.MustCompile(`(\d+(?:\.\d+)?) (GB|MB) of (?:free )?RAM`)

// Each shipped config's hardware note states the RAM it needs, and that
// covers its plan: the predicted peak of the config over a model of the
// shape it names (data: builtin:counting, as the user's data are not here).
func TestShippedConfigsStateEnoughRAM(t *testing.T) {
	shapes := shippedShapes()
	outputs, err := OutputsCost()
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range configs.Shipped() {
		t.Run(sc.Name, func(t *testing.T) {
			hw := string(sc.YAML)
			if i := strings.Index(hw, "# Hardware:"); i >= 0 {
				hw = hw[i:]
				if j := strings.Index(hw, "\n# Time:"); j >= 0 {
					hw = hw[:j]
				}
			}
			m := statedRAM.FindStringSubmatch(strings.ReplaceAll(hw, "\n#  ", ""))
			if m == nil {
				t.Fatalf("%s: the Hardware note states no \"N GB of RAM\":\n%s", sc.File, hw)
			}
			ram, _ := strconv.ParseFloat(m[1], 64)
			ram *= map[string]float64{"GB": 1e9, "MB": 1e6}[m[2]]
			spec, ok := shapes[sc.Name]
			if !ok {
				t.Fatalf("no model shape for %s: add it to shippedShapes", sc.Name)
			}
			dir := filepath.Join(t.TempDir(), "model")
			writeShape(t, dir, spec)
			cfg, err := configs.LoadShipped(sc, []string{"model.path=" + dir, "data.train=builtin:counting", "data.format=pretokenized", "output.dir=" + t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			w, err := ReadWeights(cfg)
			if err != nil {
				t.Fatal(err)
			}
			code, err := CodeCost(cfg, w.DType)
			if err != nil {
				t.Fatal(err)
			}
			mem, err := EstimateMemory(cfg, w, Measured{Base: ResidentNow(), Code: code, Outputs: outputs})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: states %s of RAM; plan: peak %s (weights %s)", sc.File, Bytes(int64(ram)), Bytes(mem.PeakBytes), Bytes(w.Mapped()))
			if float64(mem.PeakBytes) > ram {
				t.Errorf("%s states %s of RAM, but its plan's peak is %s", sc.File, Bytes(int64(ram)), Bytes(mem.PeakBytes))
			}
		})
	}
}
