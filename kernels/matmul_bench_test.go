package kernels

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/quant"
)

// The frozen-weight products of training (M = 512 rows): each model's
// projections as (N, K) = (out, in) features.
var trainingShapes = []struct {
	model string
	n, k  int
}{
	{"smol", 576, 576}, {"smol", 192, 576}, {"smol", 1536, 576}, {"smol", 576, 1536}, {"smol", 49152, 576},
	{"qwen", 896, 896}, {"qwen", 128, 896}, {"qwen", 4864, 896}, {"qwen", 896, 4864}, {"qwen", 151936, 896},
}

// peer is PyTorch running testdata/gemm_peer.py: one process for the whole
// benchmark, asked for each product right after tune ran it, so that both
// see the same load on a shared machine.
type peer struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

type peerResult struct {
	F32, BF16 float64 // GFLOP/s
	N         int     // rows of W PyTorch was timed on
}

func startPeer(b *testing.B) *peer {
	cmd := exec.Command("/usr/bin/python3", "testdata/gemm_peer.py")
	// OpenMP threads that spin while tune runs would steal its cores.
	cmd.Env = append(os.Environ(), "OMP_WAIT_POLICY=PASSIVE")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("PyTorch peer: %v (run make setup)", err)
	}
	return &peer{cmd: cmd, in: in, out: bufio.NewScanner(out)}
}

func (p *peer) run(b *testing.B, prod string, m, n, k, threads int) peerResult {
	fmt.Fprintf(p.in, "%s %d %d %d %d\n", prod, m, n, k, threads)
	if !p.out.Scan() {
		b.Fatalf("PyTorch peer stopped: %v (run make setup)", p.out.Err())
	}
	var r peerResult
	if err := json.Unmarshal(p.out.Bytes(), &r); err != nil {
		b.Fatalf("PyTorch peer printed %q: %v", p.out.Text(), err)
	}
	return r
}

func (p *peer) close() {
	p.in.Close()
	p.cmd.Wait()
}

// BenchmarkProducts times Linear (fwd) and LinearDX (dx) at the training
// shapes, f32 and bf16 weights, 1 and 2 threads, and beside each the same
// product in PyTorch 1.13 (Debian's python3-torch) in f32 and bf16. Metrics:
// tune's GFLOP/s, PyTorch's best-of-runs GFLOP/s in each dtype, and
// tune/torch against the faster of the two; and tune's flops per CPU second
// of the process (all threads), which a shared machine disturbs less than
// the wall clock. TUNE_BENCH_PEER=0 leaves PyTorch
// out; TUNE_BENCH_SHAPES=smol (or qwen, or a shape like 576x576) narrows the
// shapes.
func BenchmarkProducts(b *testing.B) {
	var pt *peer
	if os.Getenv("TUNE_BENCH_PEER") != "0" {
		pt = startPeer(b)
		defer pt.close()
	}
	filter := os.Getenv("TUNE_BENCH_SHAPES")
	r := rand.New(rand.NewPCG(1, 2))
	const m = 512
	for _, s := range trainingShapes {
		name := fmt.Sprintf("%s_%dx%d", s.model, s.n, s.k)
		if filter != "" && !strings.Contains(name, filter) {
			continue
		}
		wf := randF32(r, s.n*s.k, 1)
		weights := map[dtype.DType]Matrix{dtype.F32: MatrixF32(s.n, s.k, wf), dtype.BF16: bf16Matrix(s.n, s.k, wf)}
		x, dy := randF32(r, m*s.k, 1), randF32(r, m*s.n, 1)
		out := make([]float32, m*max(s.n, s.k))
		for _, prod := range []string{"fwd", "dx"} {
			for _, threads := range []int{1, 2} {
				p := NewPool(threads)
				var torch peerResult
				for _, dt := range []dtype.DType{dtype.F32, dtype.BF16} {
					b.Run(fmt.Sprintf("%s/%s/%s/t%d", name, prod, dt, threads), func(b *testing.B) {
						w := weights[dt]
						cpu0 := processCPU()
						for b.Loop() {
							if prod == "fwd" {
								Linear(p, out, x, m, w, nil)
							} else {
								LinearDX(p, out, dy, m, w, false)
							}
						}
						flop := 2 * float64(m*s.n*s.k) * float64(b.N)
						gflops := flop / b.Elapsed().Seconds() / 1e9
						b.ReportMetric(gflops, "GFLOP/s")
						if cpu := processCPU() - cpu0; cpu > 0 {
							b.ReportMetric(flop/cpu.Seconds()/1e9, "GFLOP/cpu-s")
						}
						if pt == nil {
							return
						}
						if torch.N == 0 { // once for both weight dtypes, right after tune's first
							torch = pt.run(b, prod, m, s.n, s.k, threads)
						}
						b.ReportMetric(torch.F32, "torch_f32_GFLOP/s")
						b.ReportMetric(torch.BF16, "torch_bf16_GFLOP/s")
						b.ReportMetric(gflops/max(torch.F32, torch.BF16), "tune/torch")
						b.ReportMetric(float64(torch.N), "torch_W_rows") // fewer than N: see gemm_peer.py
					})
				}
				p.Close()
			}
		}
	}
}

// BenchmarkLinearFewRows times Linear on the few rows of decoding (the dot
// path, W read in place) with bf16 weights on 2 threads: SmolLM2-135M's
// q_proj, down_proj and lm_head. weight_GB/s is the rate W is read at, which
// bounds decoding once W is out of cache.
func BenchmarkLinearFewRows(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	p := NewPool(2)
	defer p.Close()
	for _, s := range trainingShapes[:5:5] {
		if s.n != 576 && s.n != 49152 {
			continue
		}
		w := bf16Matrix(s.n, s.k, randF32(r, s.n*s.k, 1))
		for _, m := range []int{1, 4, 8} {
			x, y := randF32(r, m*s.k, 1), make([]float32, m*s.n)
			b.Run(fmt.Sprintf("%dx%d/m%d", s.n, s.k, m), func(b *testing.B) {
				for b.Loop() {
					Linear(p, y, x, m, w, nil)
				}
				b.ReportMetric(2*float64(m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				b.ReportMetric(float64(s.n*s.k*2)*float64(b.N)/b.Elapsed().Seconds()/1e9, "weight_GB/s")
			})
		}
	}
}

// BenchmarkQuantProducts times Linear (fwd) and LinearDX (dx) at
// Qwen2.5-0.5B's shapes (M = 512 rows, and M = 1 for decoding) on 2 threads
// with the weight quantized to Q4_0, Q8_0 and (where K is whole 256-value
// blocks) Q4_K, each run right after the same product on bf16 weights so
// both see the same load. x_bf16 is the quantized product's GFLOP/s over
// bf16's (the issue asks ≥ 0.8 of bf16's tokens/s for the whole model).
func BenchmarkQuantProducts(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	p := NewPool(2)
	defer p.Close()
	for _, s := range trainingShapes {
		if s.model != "qwen" || s.n == 128 || s.n == 151936 {
			continue
		}
		wf := randF32(r, s.n*s.k, 0.05)
		weights := map[dtype.DType]Matrix{dtype.BF16: bf16Matrix(s.n, s.k, wf)}
		types := []dtype.DType{dtype.Q4_0, dtype.Q8_0, dtype.Q4_K}
		for _, dt := range types {
			if size, err := dt.RowBytes(s.k); err == nil {
				raw := make([]byte, s.n*size)
				if err := quant.Quantize(dt, raw, wf); err != nil {
					b.Fatal(err)
				}
				weights[dt], _ = NewMatrix(dt, s.n, s.k, raw)
			}
		}
		for _, c := range []struct {
			prod string
			m    int
		}{{"fwd", 512}, {"dx", 512}, {"fwd", 1}} {
			m := c.m
			x, dy := randF32(r, m*s.k, 1), randF32(r, m*s.n, 1)
			out := make([]float32, m*max(s.n, s.k))
			var bf16 float64
			for _, dt := range append([]dtype.DType{dtype.BF16}, types...) {
				w, ok := weights[dt]
				if !ok {
					continue
				}
				b.Run(fmt.Sprintf("qwen_%dx%d/%s/m%d/%s", s.n, s.k, c.prod, m, dt), func(b *testing.B) {
					for b.Loop() {
						if c.prod == "fwd" {
							Linear(p, out, x, m, w, nil)
						} else {
							LinearDX(p, out, dy, m, w, false)
						}
					}
					gflops := 2 * float64(m*s.n*s.k) * float64(b.N) / b.Elapsed().Seconds() / 1e9
					b.ReportMetric(gflops, "GFLOP/s")
					if dt == dtype.BF16 {
						bf16 = gflops
					} else if bf16 > 0 {
						b.ReportMetric(gflops/bf16, "x_bf16")
					}
				})
			}
		}
	}
}
