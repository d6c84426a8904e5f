# Makefile for the sdxs Go module.
GO ?= go
PKGS := ./...

.PHONY: all build test race vet fmt bench fuzz screenshot loadtest

all: build

build:
	CGO_ENABLED=0 $(GO) build $(PKGS)

vet:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# RACE_TESTS are the service tests (graph cache, cancellation, Close, concurrent and batch
# generation, size checks, bad input) that test runs a second time under the race detector, which needs cgo and a C
# compiler (.ci/run installs gcc if missing). About 20 s; the whole suite under -race would
# take many minutes.
RACE_TESTS := Concurrent|Close|Cancel|Build|Runner|ProgramCache|ProgramRun|Batch|Budget|MACsAndWarm|BadInput|ZeroPipeline
RACE_PKGS := . ./internal/nn ./unet ./examples/server/internal/imgserver ./weights/hub ./vae

# test: vet, a CGO_ENABLED=0 build, and every test (oracle tests included; under CI=true a
# missing oracle fails). The fuzz seed corpora run as ordinary tests. The kernels are tested
# (and the Winograd convolutions) a second time with the noasm tag, which forces their plain-Go
# twins; the concurrency tests run a second time under -race.
test: vet build
	$(GO) test -count=1 -timeout 30m $(PKGS)
	$(GO) test -count=1 -tags noasm ./internal/kernels ./internal/conv ./internal/nn
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 10m -run '$(RACE_TESTS)' $(RACE_PKGS)

# race: only the concurrency tests, under the race detector.
race:
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 10m -run '$(RACE_TESTS)' $(RACE_PKGS)

fmt:
	gofmt -s -w .

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x $(PKGS)
	$(GO) run ./examples/bench -preset sdxs-512-dreamshaper -runs 5

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseHeader -fuzztime 60s ./weights

# screenshot: the README's picture of the web page, taken by its browser test (needs chromium).
screenshot:
	SDXS_SCREENSHOT=$(CURDIR)/docs/server.png $(GO) test -count=1 -run TestBrowserSketch ./examples/server/internal/imgserver

# loadtest: the image server at 1, 2 and 8 concurrent clients over loopback (MODEL=folder).
MODEL ?= ../shared/oracle/sdxs-dreamshaper-tiny/model
loadtest:
	$(GO) run ./examples/server/loadtest -model $(MODEL) -clients 1,2,8 -requests 24 -duration 2m -size 512x512
