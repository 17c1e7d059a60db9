#!/usr/bin/env bash
# gpu-unpack.sh: on the GPU machine, restores the binaries scripts/gpu-build.sh
# gzipped into .devcarry/bin (the device tool carries at most 64 MiB with the
# working tree). Idempotent; every gpu-*.sh script runs it first.
cd "$(dirname "$0")/.."
for f in .devcarry/bin/*.gz; do
	[ -e "$f" ] && gunzip -f "$f"
done
chmod +x .devcarry/bin/* 2>/dev/null || true
