# Makefile for the sdxs Go module.
GO ?= go
PKGS := ./...

.PHONY: all build test vet fmt bench fuzz

all: build

build:
	CGO_ENABLED=0 $(GO) build $(PKGS)

vet:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# test: vet, a CGO_ENABLED=0 build, and every test (oracle tests included; under CI=true a
# missing oracle fails). The fuzz seed corpora run as ordinary tests. The kernels are tested
# (and the Winograd convolutions) a second time with the noasm tag, which forces their plain-Go twins.
test: vet build
	$(GO) test -count=1 -timeout 30m $(PKGS)
	$(GO) test -count=1 -tags noasm ./internal/kernels ./internal/conv ./internal/nn

fmt:
	gofmt -s -w .

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x $(PKGS)
	$(GO) run ./examples/bench -preset sdxs-512-dreamshaper -runs 5

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseHeader -fuzztime 60s ./weights
