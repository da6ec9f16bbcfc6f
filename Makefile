# tune: the commands of README.md.
GO      ?= go
ORACLE  := internal/oracle/js

.PHONY: build test setup setup-apt setup-npm vet fuzz bench demo clean

build:
	$(GO) build -o bin/tune ./cmd/tune

# The oracles the tests compare against: Debian's PyTorch and transformers.js.
setup: setup-apt setup-npm

setup-apt:
	@/usr/bin/python3 -c 'import torch' 2>/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch python3-numpy; }

setup-npm:
	@if [ -f $(ORACLE)/package.json ]; then cd $(ORACLE) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error; fi

test: setup vet
	$(GO) test ./...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

# Short fuzz runs of every parser of untrusted files.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseSafetensorsHeader$$' -fuzztime 30s ./checkpoints
	$(GO) test -run '^$$' -fuzz '^FuzzOpenSafetensors$$' -fuzztime 30s ./checkpoints

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

clean:
	rm -rf bin
