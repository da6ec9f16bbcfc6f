package train

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tune-dev/tune/configs"
)

// TestLockOutputDir: a held directory is refused naming the holder's PID; a
// lock file left by a dead process is taken over; release frees it.
func TestLockOutputDir(t *testing.T) {
	cfg := &configs.Config{Path: "x.yaml"}
	cfg.Output.Dir = filepath.Join(t.TempDir(), "run")
	lockPath := filepath.Join(cfg.Output.Dir, LockFile)

	release, err := LockOutputDir(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(lockPath); strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file holds %q, want our PID", b)
	}
	// flock locks belong to an open file, so a second open in this process
	// is refused like another process.
	_, err = LockOutputDir(cfg)
	var fe *configs.FieldError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "x.yaml: output.dir: "+cfg.Output.Dir+" in use by PID "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock: %v", err)
	}
	release()
	if _, err := os.Stat(lockPath); !os.IsNotExist(err) {
		t.Fatalf("lock file left after release: %v", err)
	}

	// A killed run leaves its lock file, unlocked: its PID is dead.
	if err := os.WriteFile(lockPath, []byte("999999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	release, err = LockOutputDir(cfg)
	if err != nil {
		t.Fatalf("stale lock not taken over: %v", err)
	}
	defer release()
	if b, _ := os.ReadFile(lockPath); strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("stale lock file now holds %q, want our PID", b)
	}
}
