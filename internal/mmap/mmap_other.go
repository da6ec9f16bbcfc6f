//go:build !unix

package mmap

import (
	"errors"
	"os"
	"runtime"
)

// Map is not implemented off Unix; tune refuses rather than reading
// multi-GB checkpoints into memory.
func Map(f *os.File, size int) ([]byte, error) {
	return nil, errors.New("memory-mapping files is not supported on " + runtime.GOOS)
}

// Unmap has nothing to release where Map never maps.
func Unmap(b []byte) error { return nil }
