//go:build unix

package mmap

import (
	"os"

	"golang.org/x/sys/unix"
)

// Map maps the first size bytes of f read-only. size must be positive:
// mmap of length 0 fails with EINVAL.
func Map(f *os.File, size int) ([]byte, error) {
	return unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
}

// Unmap releases a mapping made by Map; the bytes must not be used after.
func Unmap(b []byte) error { return unix.Munmap(b) }
