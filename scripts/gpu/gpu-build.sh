#!/usr/bin/env bash
# gpu-build.sh: builds, on this machine, everything a GPU machine without a
# Go toolchain needs: lorabench, lorafit and the test binaries of the GPU packages
# into .devcarry/bin, the Vulkan loader packages into .gl/ (both
# git-ignored). Copy the working tree with .gl and .devcarry to the GPU
# machine and run scripts/gpu/gpu-remote.sh (or another scripts/gpu/gpu-*.sh)
# there from the repository root; the Python scripts they call
# (scripts/gpu/*.py, conformance/gen/make_vectors.py) are part of the tree.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .devcarry/bin
# Stripped, and gzipped below (about 45% of the size), to keep what is
# copied to the GPU machine small; scripts/gpu/gpu-env.sh unpacks them there.
go build -ldflags="-s -w" -o .devcarry/bin/lorabench ./cmd/lorabench
go build -ldflags="-s -w" -o .devcarry/bin/lorafit ./cmd/lorafit
for p in vk kernels lora quant autograd conformance optim finetune cmd/lorabench cmd/lorafit; do
	[ -d "$p" ] || continue
	go test -c -ldflags="-s -w" -o ".devcarry/bin/$(basename "$p").test" "./$p"
done
gzip -9 -f .devcarry/bin/*[!z]
if [ ! -d .gl ] || ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
	grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >> .git/info/exclude
	mkdir -p .gl/lists/partial
	o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$PWD/.gl/lists"
	apt-get $o update >/dev/null
	# The NVIDIA ICD (libGLX_nvidia) needs the GLVND libraries beside the loader.
	(cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
	rm -rf .gl/lists
fi
du -sh .devcarry .gl
