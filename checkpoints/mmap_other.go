//go:build !unix

package checkpoints

import (
	"errors"
	"os"
	"runtime"
)

// mapFile is not implemented off Unix; tune refuses rather than reading
// multi-GB checkpoints into memory.
func mapFile(f *os.File, size int) ([]byte, error) {
	return nil, errors.New("memory-mapping files is not supported on " + runtime.GOOS)
}

func unmapFile(b []byte) error { return nil }
