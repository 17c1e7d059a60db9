# vklora: make deps | shaders | build | test | race | fuzz | soak | bench | fmt | vet | clean
#
# CI runs `make test` (via .ci/run) with CI=true on a fresh Debian 12 clone.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

GO ?= go
APT_PACKAGES := libvulkan-dev mesa-vulkan-drivers spirv-tools vulkan-validationlayers
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
LORABENCH_ARGS ?= bench -quick

# In CI there is no GPU: point the Vulkan loader at lavapipe only. Elsewhere
# the code picks the device.
LVP_ICD := /usr/share/vulkan/icd.d/lvp_icd.x86_64.json
ifeq ($(CI),true)
export VK_DRIVER_FILES := $(LVP_ICD)
export VK_ICD_FILENAMES := $(LVP_ICD)
endif

# Go files the go tool would see: skip .dirs, _dirs and testdata.
GOFILES = $(shell find . -mindepth 1 \( -name '.*' -o -name '_*' -o -name testdata \) -prune -o -name '*.go' -print)

.PHONY: all deps shaders shaders-check build test race fuzz soak bench fmt fmt-check vet clean distclean

all: test

# deps installs only the apt packages that are missing, quietly (apt's
# output goes to a log shown only if it fails), and never upgrades installed
# ones (--no-upgrade; should a new package need a newer version of an
# installed dependency, the line deps prints names it). As root or via sudo.
deps:
	@missing=""; why=""; \
	for p in $(APT_PACKAGES); do \
		dpkg -s "$$p" >/dev/null 2>&1 && continue; \
		missing="$$missing $$p"; \
		case "$$p" in \
		libvulkan-dev) why="$$why, Vulkan headers and loader for cgo";; \
		mesa-vulkan-drivers) why="$$why, lavapipe: the CPU Vulkan driver the tests run on";; \
		spirv-tools) why="$$why, spirv-val for the shader tests";; \
		vulkan-validationlayers) why="$$why, the validation layer for VKLORA_VALIDATION=1";; \
		*) why="$$why, $$p";; \
		esac; \
	done; \
	if [ -n "$$missing" ]; then \
		log=$$(mktemp "$${TMPDIR:-/tmp}/vklora-deps.XXXXXX"); \
		quiet_apt() { $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -qq -o Dpkg::Use-Pty=0 "$$@" >>"$$log" 2>&1; }; \
		fail() { echo "deps: $$1 failed (installing$$missing); its output:"; cat "$$log"; rm -f "$$log"; exit 1; }; \
		quiet_apt update || fail "apt-get update"; \
		upgrades=$$( { apt-get -s -o Debug::NoLocking=1 install --no-install-recommends --no-upgrade $$missing 2>>"$$log" || true; } | \
			sed -n 's/^Inst \([^ ]*\) \[.*/\1/p' | tr '\n' ' '); \
		echo "deps: installing$$missing ($${why#, })$${upgrades:+; apt also upgrades $${upgrades% }, which they need}"; \
		quiet_apt install -y --no-install-recommends --no-upgrade $$missing || fail "apt-get install"; \
		rm -f "$$log"; \
	fi
	@$(GO) mod download

# Rebuild shaders/spv and shaders/registry_gen.go with the pinned glslc.
shaders:
	@[ -n "$${GLSLC:-}" ] || bash scripts/fetch-glslc.sh >/dev/null
	$(GO) run -tags shadergen ./shaders/gen

shaders-check:
	@[ -n "$${GLSLC:-}" ] || bash scripts/fetch-glslc.sh >/dev/null
	$(GO) run -tags shadergen ./shaders/gen -check

build:
	$(GO) build -o bin/lorabench ./cmd/lorabench
	$(GO) build -o bin/lorafit ./cmd/lorafit

fmt:
	@files="$(GOFILES)"; [ -z "$$files" ] || gofmt -w $$files

fmt-check:
	@files="$(GOFILES)"; bad=$$( [ -z "$$files" ] || gofmt -l $$files ); \
	if [ -n "$$bad" ]; then \
		echo "gofmt: these files need formatting (run make fmt):"; echo "$$bad" | sed 's/^/  /'; \
		echo "make test: FAILED (gofmt)"; exit 1; \
	fi

vet:
	@$(GO) vet ./... || { echo "make test: FAILED (go vet)"; exit 1; }

# make test runs the suite twice: on the default device (CI: Debian 12's
# lavapipe, which has no cooperative matrices), then on Debian sid's lavapipe
# (VK_KHR_cooperative_matrix, f16 only), unpacked into .tools/lvp-sid by
# scripts/fetch-lavapipe-coopmat.sh and run through
# scripts/lvp-coopmat-exec.sh, with VKLORA_REQUIRE_COOPMAT=1 so that its
# cooperative-matrix tests fail rather than skip. Both runs are mandatory:
# a failed fetch fails make test. make test-system / test-coopmat run one.
GO_TEST := $(GO) test -count=1 -timeout 14m
COOPMAT_EXEC := $(CURDIR)/scripts/lvp-coopmat-exec.sh
.PHONY: test-system test-coopmat lavapipe-coopmat

test: deps
	@$(MAKE) --no-print-directory fmt-check
	@$(MAKE) --no-print-directory vet
	@start=$$(date +%s); failed=""; \
	$(MAKE) --no-print-directory test-system || failed="$$failed system-lavapipe"; \
	$(MAKE) --no-print-directory test-coopmat || failed="$$failed coopmat-lavapipe"; \
	if [ -z "$$failed" ]; then \
		echo "make test: PASSED (gofmt, vet, tests on both drivers) in $$(( $$(date +%s) - start ))s"; \
	else \
		echo "make test: FAILED (go test:$$failed) after $$(( $$(date +%s) - start ))s"; exit 1; \
	fi

test-system: deps
	@start=$$(date +%s); \
	echo "$(GO_TEST) ./...$(if $(filter true,$(CI)), (Vulkan: lavapipe))"; \
	if $(GO_TEST) ./...; then \
		echo "test-system: PASSED in $$(( $$(date +%s) - start ))s"; \
	else \
		echo "test-system: FAILED after $$(( $$(date +%s) - start ))s"; exit 1; \
	fi

lavapipe-coopmat:
	@bash scripts/fetch-lavapipe-coopmat.sh

test-coopmat: deps
	@start=$$(date +%s); \
	bash scripts/fetch-lavapipe-coopmat.sh || { echo "test-coopmat: FAILED (no sid lavapipe: fetch failed, see above)"; exit 1; }; \
	fetched=$$(date +%s); \
	echo "VKLORA_REQUIRE_COOPMAT=1 $(GO_TEST) -exec scripts/lvp-coopmat-exec.sh ./... (Vulkan: sid lavapipe, cooperative matrices)"; \
	if VKLORA_REQUIRE_COOPMAT=1 VKLORA_SKIP_GPU= $(GO_TEST) -exec $(COOPMAT_EXEC) ./...; then \
		echo "test-coopmat: PASSED in $$(( $$(date +%s) - fetched ))s (fetch $$(( fetched - start ))s)"; \
	else \
		echo "test-coopmat: FAILED after $$(( $$(date +%s) - fetched ))s (fetch $$(( fetched - start ))s)"; exit 1; \
	fi

# Each fuzz target for FUZZTIME (the plain suite runs their seed corpora):
# every func Fuzz* of a _test.go file, found by name (the safetensors, NF4,
# PEFT, HF-config and conformance loaders, and lorabench's command lines).
FUZZTIME ?= 30s
fuzz: deps
	@set -e; for t in $$(grep -rlE '^func Fuzz' --include='*_test.go' . | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -hoE '^func Fuzz[A-Za-z0-9_]+' $$t/*_test.go | sed 's/^func //'); do \
			echo "fuzz: $$t $$f for $(FUZZTIME)"; \
			$(GO) test $$t -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME); \
		done; \
	done

# The soaks of package lora (TestSoak*) at a length the plain suite does
# not run: SOAK_STEPS MLP forward+backward steps (each with its recorder, a
# tensor, an NF4 weight and an engine made and released) and SOAK_CYCLES
# cycles of a device with its engine, tensors, kernels and a step. Each
# logs one line (-v): bytes per step or cycle of C heap, Go heap, RSS and
# device memory, and fails where they grow. About 3 minutes on lavapipe,
# bounded by SOAK_TIMEOUT. SOAK_FLUSH_EVERY empties the buffer cache every
# that many steps (1: every step allocates and frees all its buffers). The
# GPU machine: make soak SOAK_STEPS=100000 SOAK_FLUSH_EVERY=10 (3.7 minutes
# on an H200; docs/RELIABILITY.md).
SOAK_STEPS ?= 20000
SOAK_CYCLES ?= 200
SOAK_FLUSH_EVERY ?= 1
SOAK_TIMEOUT ?= 60m
soak: deps
	VKLORA_SOAK_STEPS=$(SOAK_STEPS) VKLORA_SOAK_CYCLES=$(SOAK_CYCLES) VKLORA_SOAK_FLUSH_EVERY=$(SOAK_FLUSH_EVERY) $(GO) test -count=1 -timeout $(SOAK_TIMEOUT) -run '^TestSoak' -v ./lora

# The concurrency tests under the race detector, on the system lavapipe.
race: deps
	$(GO) test -count=1 -race -timeout 14m -run 'Concurrent|Foreign|Pending' ./vk/... ./kernels ./lora

bench: deps build
	./bin/lorabench $(LORABENCH_ARGS)

clean:
	rm -rf bin/ out/
	$(GO) clean -testcache

# Also drop the fetched compiler and sid lavapipe (.tools/); make shaders and
# make test fetch them again.
distclean: clean
	rm -rf .tools/
