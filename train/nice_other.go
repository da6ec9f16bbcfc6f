//go:build unix && !linux

package train

import (
	"golang.org/x/sys/unix"
)

// setNice lowers the process's CPU priority to n (0 leaves it).
func setNice(n int) error {
	if n == 0 {
		return nil
	}
	return unix.Setpriority(unix.PRIO_PROCESS, 0, n)
}
