// Package lora holds low-rank adapters: which projections get one, their A and
// B matrices, how they attach to a model graph, their Hugging Face PEFT
// names, and merging several adapters into one (cat, svd, ties). It knows
// nothing of file formats beyond those names.
package lora
