package train

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tune-dev/tune/configs"
)

// LockFile is the name of the lock a run holds in its output.dir.
const LockFile = ".tune.lock"

// LockOutputDir takes cfg's output.dir for this process, so that two runs
// never write into one directory (checkpoints, metrics and the adapter of
// one under the other's report). The lock is an advisory lock on
// output.dir/.tune.lock, which holds the PID of its owner: the kernel drops
// it when the owner exits, however it exits, so a lock file left by a
// killed run (a dead PID) is simply taken over. A directory held by a live
// process is a *configs.FieldError naming it (exit code 2). The returned
// function releases the lock.
func LockOutputDir(cfg *configs.Config) (release func(), err error) {
	dir := cfg.Output.Dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, LockFile)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("output.dir: %w", err)
		}
		held, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("output.dir: lock %s: %w", path, err)
		}
		if !held {
			pid := readPID(f)
			f.Close()
			return nil, &configs.FieldError{File: cfg.Path, Path: "output.dir", Msg: fmt.Sprintf("%s in use by PID %s (another tune run): wait for it to end, or set output.dir elsewhere", dir, pid)}
		}
		// The file may have been removed by its last owner between our open
		// and our lock: then we hold a lock on a file nobody else will open.
		if same, err := sameFile(f, path); err != nil || !same {
			f.Close()
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("output.dir: %w", err)
			}
			continue
		}
		if err := f.Truncate(0); err == nil {
			_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("output.dir: %s: %w", path, err)
		}
		return func() {
			os.Remove(path) // before the unlock, so that no one locks a removed file
			f.Close()
		}, nil
	}
}

func readPID(f *os.File) string {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	if pid := strings.TrimSpace(string(b[:n])); pid != "" {
		return pid
	}
	return "unknown"
}

func sameFile(f *os.File, path string) (bool, error) {
	a, err := f.Stat()
	if err != nil {
		return false, err
	}
	b, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	return os.SameFile(a, b), nil
}
