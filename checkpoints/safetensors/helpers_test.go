package safetensors

import (
	"encoding/binary"
)

// fileBytes builds a safetensors file from a header and a data section.
func fileBytes(header string, data []byte) []byte {
	out := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(out, uint64(len(header)))
	out = append(out, header...)
	return append(out, data...)
}
