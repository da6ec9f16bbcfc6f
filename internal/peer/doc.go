// Package peer holds tune's PyTorch peer, the other half of `make bench`:
// train.py times LoRA training steps of a Llama-family model written by hand
// in PyTorch (llama.py), and compare.py runs it and `tune bench` on the same
// shapes, interleaved, and prints the ratio. It has no Go code; its test
// holds the peer's model to the project's PyTorch reference
// (internal/testmodels/reference) and the scripts to the output the driver
// reads, so `go test ./...` keeps the benchmark honest.
package peer
