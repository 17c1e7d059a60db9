#!/usr/bin/env bash
# scripts/gpu/peak.sh BINARY [CACHE_DIR]: on a GPU machine, measure the
# device's ceilings with a carried lorabench binary and print them.
#
#   bash scripts/gpu/peak.sh bin/lorabench            # cache: $OUT/peak, else a temp dir
#   VKLORA_DEVICE=0 bash scripts/gpu/peak.sh ./lorabench /tmp/peak
#
# Runs `lorabench peak -fresh -json` (always measures; the JSON also lands
# in CACHE_DIR, the cache that later matmul/bench runs read for frac_peak
# when VKLORA_PEAK_CACHE points at it), then prints the table from that
# cache. The JSON document is kept as CACHE_DIR/peak.json (and $OUT/peak.json
# when $OUT is set). Exit status: lorabench's.
set -uo pipefail
if [ $# -lt 1 ] || [ ! -x "$1" ]; then
	echo "usage: $0 BINARY [CACHE_DIR]   (BINARY: an executable lorabench)" >&2
	exit 2
fi
B=$1
dir=${2:-${OUT:+$OUT/peak}}
dir=${dir:-$(mktemp -d)}
mkdir -p "$dir"
command -v nvidia-smi >/dev/null 2>&1 &&
	nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv,noheader
timeout 300 "$B" peak -fresh -json -cache "$dir" > "$dir/peak.json"
rc=$?
if [ $rc -ne 0 ]; then
	echo "lorabench peak -fresh -json: exit $rc" >&2
	exit $rc
fi
[ -n "${OUT:-}" ] && [ "$dir" != "$OUT" ] && cp "$dir/peak.json" "$OUT/peak.json"
"$B" peak -cache "$dir"
