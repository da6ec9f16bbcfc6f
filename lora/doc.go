// Package lora holds low-rank adapters: which projections get one, their A and
// B matrices, how they attach to a model graph, and their Hugging Face PEFT
// names. It knows nothing of file formats beyond those names.
package lora
