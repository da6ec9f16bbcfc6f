// Package safetensors reads and writes safetensors files: an 8-byte header
// length, a JSON header naming each tensor's dtype, shape and byte range, then
// the data. Open memory-maps the data and validates the header as strictly as
// the reference Python library (overlaps, gaps, sizes), so a corrupt download
// is reported with its place rather than read; Write lays files out as that
// library does, atomically.
package safetensors
