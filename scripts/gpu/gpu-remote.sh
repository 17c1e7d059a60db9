#!/usr/bin/env bash
# gpu-remote.sh: runs on the GPU machine from the repository root, after
# scripts/gpu/gpu-build.sh here, with .gl and .devcarry copied along.
# Installs the Vulkan loader and runs every GPU test binary in its package
# directory (testdata paths are relative). Logs go to $OUT when set;
# prints PASS or FAIL per package and exits non-zero on any failure.
set -uo pipefail
source "$(dirname "$0")/gpu-env.sh"
status=0
for t in "$B"/*.test; do
	name=$(basename "$t" .test)
	dir=$name
	[ "$name" = lorabench ] && dir=cmd/lorabench
	[ "$name" = lorafit ] && dir=cmd/lorafit
	run=("$t" -test.count=1 -test.timeout=8m)
	if [ "$name" = lorabench ]; then
		# lorabench's tests run the CLI end to end; one process per test
		# gives each a fresh Vulkan instance.
		run=(bash -c 'for t in $("$0" -test.list "."); do "$0" -test.count=1 -test.run "^$t\$" || exit 1; done' "$t")
	fi
	if (cd "$dir" && "${run[@]}" >"$out/test-$name.log" 2>&1); then
		echo "PASS $name ($(tail -1 "$out/test-$name.log"))"
	else
		echo "FAIL $name"; tail -30 "$out/test-$name.log"; status=1
	fi
done
exit $status
