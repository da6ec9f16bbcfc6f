package train

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// setNice lowers the CPU priority of every thread of the process to n (0
// leaves it). Linux keeps a nice value per thread, and a new thread takes
// its creator's, so setting each existing one covers the threads to come.
func setNice(n int) error {
	if n == 0 {
		return nil
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("list threads: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		cur, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
		if err == nil && 20-cur >= n { // the kernel returns 20 - nice
			continue // already as low or lower: never raise it
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, n); err != nil && err != unix.ESRCH {
			return fmt.Errorf("set nice %d: %w", n, err)
		}
	}
	return nil
}
