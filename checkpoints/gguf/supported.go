package gguf

// Supported lists the tensor types tune computes with, by name, for the
// messages that refuse the others.
func Supported() []string {
	var out []string
	for t := range Type(len(ggmlNames)) {
		if _, _, ok := t.layout(); ok && t.DType() != "" {
			out = append(out, t.String())
		}
	}
	return out
}
