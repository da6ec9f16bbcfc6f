package mmap

import (
	"fmt"
	"math"
	"os"
)

// Open opens a regular file of at least minSize bytes that can be
// memory-mapped whole; errors name the file and, when too short, what the
// first minSize bytes should hold.
func Open(path string, minSize int64, header string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err // *PathError already names the file
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	size := st.Size()
	switch {
	case !st.Mode().IsRegular():
		err = fmt.Errorf("%s: not a regular file", path)
	case size < minSize:
		err = fmt.Errorf("%s: file is %d bytes, too short for %s", path, size, header)
	case size > math.MaxInt:
		err = fmt.Errorf("%s: file of %d bytes is too large to map on this platform", path, size)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, size, nil
}
