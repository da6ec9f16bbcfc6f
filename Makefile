# tune: the commands of README.md.
GO      ?= go
# Each folder holds an npm oracle: transformers.js tokenizers, llama.cpp.
ORACLES := $(dir $(wildcard internal/oracle/*/package.json))

.PHONY: build test setup setup-apt setup-npm vet fuzz bench bench-go plan-bench demo clean

build:
	$(GO) build -o bin/tune ./cmd/tune

# The oracles the tests compare against: Debian's PyTorch and transformers.js.
setup: setup-apt setup-npm

setup-apt:
	@/usr/bin/python3 -c 'import torch' 2>/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch python3-numpy; }

# npm install, not npm ci: the registry here lacks node-llama-cpp's other
# platform packages, so its lock cannot list them and npm ci refuses.
# --ignore-scripts: node-llama-cpp's postinstall would try to download or build
# llama.cpp; its prebuilt binaries come as the @node-llama-cpp/linux-x64 package.
# --omit=optional skips the CUDA and Vulkan builds.
setup-npm:
	@for d in $(ORACLES); do \
		[ -d $$d/node_modules ] && [ $$d/node_modules -nt $$d/package-lock.json ] && continue; \
		echo "npm install in $$d"; \
		(cd $$d && npm install --no-audit --no-fund --ignore-scripts --omit=optional --loglevel=error) || exit 1; \
	done

# The kernel and model tests run again with the portable kernels forced, so a
# CPU without AVX2 gets a tested path (TUNE_KERNELS; avx512 needs such a CPU).
test: setup vet
	$(GO) test -timeout 30m ./...
	TUNE_KERNELS=ref $(GO) test -count=1 ./kernels ./model

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

# Short fuzz runs of every parser of untrusted files.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseHeader$$' -fuzztime $(FUZZTIME) ./checkpoints/safetensors
	$(GO) test -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME) ./checkpoints/safetensors
	$(GO) test -run '^$$' -fuzz '^FuzzRead$$' -fuzztime $(FUZZTIME) ./checkpoints/gguf
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeConfig$$' -fuzztime $(FUZZTIME) ./checkpoints/peft
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./configs
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./tokenizer
	$(GO) test -run '^$$' -fuzz '^FuzzRoundTrip$$' -fuzztime $(FUZZTIME) ./tokenizer
	$(GO) test -run '^$$' -fuzz '^FuzzFastSplit$$' -fuzztime $(FUZZTIME) ./tokenizer
	$(GO) test -run '^$$' -fuzz '^FuzzChatTemplate$$' -fuzztime $(FUZZTIME) ./tokenizer
	$(GO) test -run '^$$' -fuzz '^FuzzFromGGUF$$' -fuzztime $(FUZZTIME) ./tokenizer
	$(GO) test -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) ./model
	$(GO) test -run '^$$' -fuzz '^FuzzOpenGGUF$$' -fuzztime $(FUZZTIME) ./model
	$(GO) test -run '^$$' -fuzz '^FuzzFromPEFT$$' -fuzztime $(FUZZTIME) ./lora

# tune bench against the PyTorch peer (internal/peer) on the SmolLM2-135M and
# Qwen2.5-0.5B shapes of issue 8, interleaved; prints tokens/s, peak RSS and the
# ratio. BENCH_FLAGS passes compare.py flags, e.g. BENCH_FLAGS="--rounds 1
# --shape smollm2-135m" or "--peer-only". The f32 peer (CPUs without AVX-512)
# wants libopenblas0-pthread; without it PyTorch uses the reference BLAS.
BENCH_FLAGS ?=
bench: build
	/usr/bin/python3 internal/peer/compare.py $(BENCH_FLAGS)

# The Go benchmarks, one iteration each.
bench-go:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

clean:
	rm -rf bin

# tune plan's memory and step-time errors against real tune runs at larger
# shapes (SmolLM2-135M and Qwen2.5-0.5B at 256-512 tokens): figures, not a
# pass/fail. Minutes on 2 cores.
plan-bench:
	$(GO) test -run '^$$' -bench '^BenchmarkPlanAccuracy$$' -benchtime 1x -timeout 60m -v ./cmd/tune
