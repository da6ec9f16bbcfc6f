// Package builtin writes complete Hugging Face model directories with random
// weights (config.json, safetensors single or sharded, f32/f16/bf16): the
// model behind `model.path: builtin:tiny` (Demo), and the fixtures tests
// generate instead of committing binaries. It is production code so that the
// tune binary never links a test package.
package builtin
