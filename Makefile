# vklora: make deps | shaders | build | test | bench | fmt | vet | clean
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

.PHONY: all deps shaders shaders-check build test bench fmt fmt-check vet clean distclean

all: test

deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
		dpkg -s "$$p" >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		$(SUDO) apt-get update -q; \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
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

test: deps
	@$(MAKE) --no-print-directory fmt-check
	@$(MAKE) --no-print-directory vet
	@start=$$(date +%s); \
	echo "go test -count=1 -timeout 14m ./...$(if $(filter true,$(CI)), (Vulkan: lavapipe))"; \
	if $(GO) test -count=1 -timeout 14m ./...; then \
		echo "make test: PASSED (gofmt, vet, tests) in $$(( $$(date +%s) - start ))s"; \
	else \
		echo "make test: FAILED (go test) after $$(( $$(date +%s) - start ))s"; exit 1; \
	fi

bench: deps build
	./bin/lorabench $(LORABENCH_ARGS)

clean:
	rm -rf bin/ out/
	$(GO) clean -testcache

# Also drop the fetched compiler (.tools/); make shaders fetches it again.
distclean: clean
	rm -rf .tools/
