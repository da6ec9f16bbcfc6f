package kernels

import (
	"time"

	"golang.org/x/sys/unix"
)

// processCPU is the CPU time all threads of the process have run: on a
// machine shared with other work, flops per CPU second say how fast the
// kernels run while they do run.
func processCPU() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
