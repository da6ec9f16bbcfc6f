package train

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// threadNices reads the nice value of every thread of this process from
// /proc (field 19 of stat, after the command name in parentheses).
func threadNices(t *testing.T) map[string]int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", task.Name(), "stat"))
		if err != nil {
			continue // the thread ended
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		n, err := strconv.Atoi(f[16]) // field 19 of stat; f starts at field 3
		if err != nil {
			t.Fatal(err)
		}
		out[task.Name()] = n
	}
	return out
}

// resources.nice lowers every thread of the process, as the kernel keeps a
// nice value per thread; 0 leaves them.
func TestSetNice(t *testing.T) {
	if err := setNice(0); err != nil {
		t.Fatal(err)
	}
	before := threadNices(t)
	if err := setNice(7); err != nil {
		t.Fatal(err)
	}
	after := threadNices(t)
	for tid, n := range after {
		if n != max(7, before[tid]) {
			t.Errorf("thread %s: nice %d after setNice(7), want 7", tid, n)
		}
	}
	if len(after) < 2 {
		t.Errorf("%d threads: a Go process has several", len(after))
	}
}
