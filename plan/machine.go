package plan

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/cpuid/v2"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/process"

	"github.com/tune-dev/tune/configs"
)

// Machine is what tune sees of the computer it runs on.
type Machine struct {
	CPU      string   `json:"cpu"`
	Cores    int      `json:"cores"`   // physical cores (0 when unknown)
	Threads  int      `json:"threads"` // logical CPUs this process may use
	Features []string `json:"features"`
	// TotalBytes and AvailableBytes are the RAM (MemAvailable: free plus what
	// the kernel can reclaim without swapping), lowered to the cgroup's limit
	// and what is left under it when a limit applies.
	TotalBytes     int64 `json:"total_bytes"`
	AvailableBytes int64 `json:"available_bytes"`
	// AvailableFrom is AvailableEnv when that set AvailableBytes.
	AvailableFrom string `json:"available_from,omitempty"`
	// CgroupLimitBytes is the memory limit of tune's cgroup; 0 when none.
	CgroupLimitBytes int64 `json:"cgroup_limit_bytes"`
	GPUs             []GPU `json:"gpus"`
	// GPUNote says why GPUs is empty: "no GPU (nvidia-smi not found)".
	GPUNote string `json:"gpu_note,omitempty"`
	// Groups are the memory of the processes already running, grouped as a
	// person names them, largest first.
	Groups []Group `json:"processes"`
}

// GPU is one NVIDIA GPU as nvidia-smi reports it.
type GPU struct {
	Name       string `json:"name"`
	TotalBytes int64  `json:"total_bytes"`
	FreeBytes  int64  `json:"free_bytes"`
}

// Group is the resident memory of a set of processes, by kind.
type Group struct {
	Kind      string   `json:"kind"` // browsers, editors and IDEs, containers, tune runs, other
	Names     []string `json:"names"`
	Processes int      `json:"processes"`
	RSSBytes  int64    `json:"rss_bytes"`
}

// Closable is whether closing the group's programs is a reasonable thing
// to suggest to a person at a desktop.
func (g Group) Closable() bool { return g.Kind != kindOther && g.Kind != kindContainers }

// Process kinds, by executable name.
const (
	kindBrowsers   = "browsers"
	kindEditors    = "editors and IDEs"
	kindContainers = "containers"
	kindTune       = "other tune runs"
	kindOther      = "other"
)

var kinds = []struct {
	kind  string
	names []string
}{
	{kindBrowsers, []string{"chrome", "chromium", "chromium-browser", "google-chrome", "firefox", "firefox-esr", "firefox-bin", "brave", "brave-browser", "msedge", "microsoft-edge", "opera", "vivaldi", "vivaldi-bin", "safari", "epiphany", "WebKitWebProcess"}},
	{kindEditors, []string{"code", "code-oss", "codium", "cursor", "idea", "pycharm", "goland", "clion", "webstorm", "rider", "studio", "java", "nvim", "vim", "emacs", "gedit", "kate", "sublime_text", "zed", "atom", "jupyter-lab", "jupyter-notebook"}},
	{kindContainers, []string{"dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "docker-proxy", "podman", "conmon", "qemu-system-x86_64", "qemu-system-aarch64", "VBoxHeadless", "kubelet"}},
}

// kindOf is the group of an executable name.
func kindOf(name string) string {
	if name == "tune" {
		return kindTune
	}
	for _, k := range kinds {
		if slices.Contains(k.names, name) {
			return k.kind
		}
	}
	return kindOther
}

// AvailableEnv, when set to a size (8GB), is the memory the plan takes as
// available instead of what the machine has now: to plan for another
// machine, and for tests that need a fixed figure on a shared one.
const AvailableEnv = "TUNE_AVAILABLE_MEMORY"

// Detect looks at the machine: CPU, memory, cgroup limit, GPUs and the
// processes running (all but self). Each part that cannot be read is left
// empty; only the memory figures are required.
func Detect(ctx context.Context) (Machine, error) {
	m := Machine{
		CPU:     strings.TrimSpace(cpuid.CPU.BrandName),
		Cores:   cpuid.CPU.PhysicalCores,
		Threads: runtime.NumCPU(),
	}
	if m.CPU == "" {
		m.CPU = runtime.GOARCH
	}
	for _, f := range []struct {
		name string
		id   cpuid.FeatureID
	}{{"AVX2", cpuid.AVX2}, {"FMA", cpuid.FMA3}, {"F16C", cpuid.F16C}, {"AVX-512", cpuid.AVX512F}, {"AVX512_BF16", cpuid.AVX512BF16}, {"AMX_BF16", cpuid.AMXBF16}, {"NEON", cpuid.ASIMD}} {
		if cpuid.CPU.Supports(f.id) {
			m.Features = append(m.Features, f.name)
		}
	}
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return m, fmt.Errorf("read the machine's memory: %w", err)
	}
	m.TotalBytes, m.AvailableBytes = int64(vm.Total), int64(vm.Available)
	if limit, used, ok := cgroupMemory(); ok {
		m.CgroupLimitBytes = limit
		m.TotalBytes = min(m.TotalBytes, limit)
		m.AvailableBytes = min(m.AvailableBytes, max(limit-used, 0))
	}
	if v := os.Getenv(AvailableEnv); v != "" {
		b, err := configs.ParseBytes(v)
		if err != nil {
			return m, fmt.Errorf("%s: %w", AvailableEnv, err)
		}
		m.AvailableBytes, m.AvailableFrom = b, AvailableEnv
	}
	if m.GPUs, m.GPUNote = detectGPUs(ctx); m.GPUs == nil {
		m.GPUs = []GPU{} // "gpus": [] in JSON
	}
	m.Groups = processGroups(ctx)
	return m, nil
}

// Available is the memory available to tune now: MemAvailable, or less
// under a cgroup limit. The run's memory watch polls it.
func Available(ctx context.Context) (int64, error) {
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return 0, fmt.Errorf("read the machine's memory: %w", err)
	}
	avail := int64(vm.Available)
	if limit, used, ok := cgroupMemory(); ok {
		avail = min(avail, max(limit-used, 0))
	}
	return avail, nil
}

// cgroupMemory reads the memory limit and usage of this process's cgroup:
// v2's memory.max and memory.current, or v1's limit_in_bytes and
// usage_in_bytes. ok is false when there is no limit (gopsutil reads
// containers' cgroups by container id, not the calling process's).
func cgroupMemory() (limit, used int64, ok bool) {
	raw, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, 0, false
	}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var dir, maxFile, curFile string
		switch {
		case parts[0] == "0" && parts[1] == "": // v2
			dir, maxFile, curFile = filepath.Join("/sys/fs/cgroup", parts[2]), "memory.max", "memory.current"
		case slices.Contains(strings.Split(parts[1], ","), "memory"): // v1
			dir, maxFile, curFile = filepath.Join("/sys/fs/cgroup/memory", parts[2]), "memory.limit_in_bytes", "memory.usage_in_bytes"
			if _, err := os.Stat(dir); err != nil {
				dir = "/sys/fs/cgroup/memory" // the container's view: its own cgroup is the root
			}
		default:
			continue
		}
		limit, err1 := readInt(filepath.Join(dir, maxFile))
		used, err2 := readInt(filepath.Join(dir, curFile))
		// v1 writes "no limit" as a huge number near 2^63.
		if err1 != nil || err2 != nil || limit <= 0 || limit >= 1<<60 {
			return 0, 0, false
		}
		return limit, used, true
	}
	return 0, 0, false
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64) // "max" fails: no limit
}

// detectGPUs asks nvidia-smi, which comes with the NVIDIA driver, so that
// tune builds without CUDA and without cgo.
func detectGPUs(ctx context.Context) ([]GPU, string) {
	path, err := exec.LookPath("nvidia-smi")
	if err != nil {
		return nil, "no GPU (nvidia-smi not found)"
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			err = errors.New(strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Sprintf("no GPU (nvidia-smi: %v)", err)
	}
	gpus, err := parseNvidiaSMI(out)
	if err != nil {
		return nil, fmt.Sprintf("no GPU (nvidia-smi: %v)", err)
	}
	if len(gpus) == 0 {
		return nil, "no GPU (nvidia-smi lists none)"
	}
	return gpus, ""
}

// parseNvidiaSMI reads lines of "name, total MiB, free MiB".
func parseNvidiaSMI(out []byte) ([]GPU, error) {
	var gpus []GPU
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) != 3 {
			return nil, fmt.Errorf("line %q: want name, memory.total, memory.free", line)
		}
		total, err1 := strconv.ParseInt(strings.TrimSpace(f[1]), 10, 64)
		free, err2 := strconv.ParseInt(strings.TrimSpace(f[2]), 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("line %q: memory figures are not whole MiB", line)
		}
		gpus = append(gpus, GPU{Name: strings.TrimSpace(f[0]), TotalBytes: total << 20, FreeBytes: free << 20})
	}
	return gpus, sc.Err()
}

// processGroups sums the resident memory of the running processes by kind,
// and by executable name within "other" (the largest few).
func processGroups(ctx context.Context) []Group {
	procs, err := process.ProcessesWithContext(ctx)
	if err != nil {
		return nil
	}
	self := int32(os.Getpid())
	groups := map[string]*Group{}
	for _, p := range procs {
		if p.Pid == self {
			continue
		}
		name, err := p.NameWithContext(ctx)
		if err != nil || name == "" {
			continue
		}
		mi, err := p.MemoryInfoWithContext(ctx)
		if err != nil || mi.RSS == 0 {
			continue // a kernel thread, or another user's process
		}
		kind := kindOf(name)
		key := kind
		if kind == kindOther {
			key = kindOther + ":" + name
		}
		g := groups[key]
		if g == nil {
			g = &Group{Kind: kind}
			groups[key] = g
		}
		if !slices.Contains(g.Names, name) {
			g.Names = append(g.Names, name)
		}
		g.Processes++
		g.RSSBytes += int64(mi.RSS)
	}
	out := make([]Group, 0, len(groups))
	for _, g := range groups {
		slices.Sort(g.Names)
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b Group) int {
		if a.RSSBytes != b.RSSBytes {
			return int(max(min(b.RSSBytes-a.RSSBytes, 1), -1))
		}
		return strings.Compare(a.Kind+a.Names[0], b.Kind+b.Names[0])
	})
	return out
}
