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
