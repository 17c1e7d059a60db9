#!/usr/bin/env bash
# gpu-build.sh: builds, on this machine, everything a GPU machine without a
# Go toolchain needs into .devcarry/ (git-ignored): lorabench, the test
# binaries of the GPU packages, the Vulkan loader packages (.gl/) and the
# conformance generator. Then run scripts/gpu-remote.sh there, carrying
# .gl and .devcarry.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .devcarry/bin
# Stripped: the device tool carries at most 64 MiB in all.
go build -ldflags="-s -w" -o .devcarry/bin/lorabench ./cmd/lorabench
for p in vk lora quant autograd conformance cmd/lorabench; do
	[ -d "$p" ] || continue
	go test -c -ldflags="-s -w" -o ".devcarry/bin/$(basename "$p").test" "./$p"
done
# Gzipped too (about 45% of the size: binaries and working tree share the 64 MiB
# carry); scripts/gpu-env.sh restores them there.
gzip -9 -f .devcarry/bin/*[!z]
cp ../shared/bench/*.py .devcarry/ 2>/dev/null || true
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
