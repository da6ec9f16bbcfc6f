// Package ggufread reads and validates GGUF files for tests: the writer's
// round trips, the exporter's checks of what llama.cpp will load, and the
// Q8_0 error bound. No production code reads GGUF, so the reader lives with
// the tests that need it; it is still fuzzed (FuzzRead), because the files it
// reads in the tests' round trips could be anything.
package ggufread
