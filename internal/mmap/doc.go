// Package mmap maps files read-only into memory, so that opening a multi-GB
// checkpoint costs no RAM until its tensors are touched and the page cache is
// shared with other processes. Off Unix it refuses rather than reading the
// file into memory.
package mmap
