package gguf

import (
	"fmt"
	"strings"

	"github.com/tune-dev/tune/internal/dtype"
)

// ggmlNames are ggml.h's names of its tensor types, so that a type tune does
// not read is refused by the name users see in llama.cpp's output. Numbers
// ggml retired (4, 5, 31-33, 36-38) have no name.
var ggmlNames = [...]string{
	0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
	10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
	16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS",
	24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16",
	34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}

// ggmlName is t's name in ggml.h, "" for a number ggml does not use.
func ggmlName(t Type) string {
	if int(t) < len(ggmlNames) {
		return ggmlNames[t]
	}
	return ""
}

// Supported lists the tensor types tune reads model weights in, by name.
func Supported() []string {
	var out []string
	for t := range Type(len(ggmlNames)) {
		if _, _, ok := t.layout(); ok && t.dtype() != "" {
			out = append(out, t.String())
		}
	}
	return out
}

// errUnsupported is the one message for a tensor type tune does not read.
func errUnsupported(t Type) error {
	return fmt.Errorf("type %s is not supported; tune reads %s", t, strings.Join(Supported(), ", "))
}

// DType is the element type tune computes with for tensors of type t: the
// one mapping from GGUF tensor types to tune's dtypes.
func (t Type) DType() (dtype.DType, error) {
	if d := t.dtype(); d != "" {
		return d, nil
	}
	return "", errUnsupported(t)
}
