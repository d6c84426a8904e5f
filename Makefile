# Makefile for the sdxs Go module.
GO ?= go
PKGS := ./...

.PHONY: all build test vet fmt bench fuzz

all: build

build:
	CGO_ENABLED=0 $(GO) build $(PKGS)

vet:
	$(GO) vet $(PKGS)

# test: vet, a CGO_ENABLED=0 build, and every test (oracle tests included; under CI=true a
# missing oracle fails). The fuzz seed corpora run as ordinary tests.
test: vet build
	$(GO) test -count=1 -timeout 30m $(PKGS)

fmt:
	gofmt -s -w .

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x $(PKGS)

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseHeader -fuzztime 60s ./weights
