#!/usr/bin/env bash
# gpu-khr.sh: one measuring call for the cooperative-matrix kernels, on the
# GPU machine after scripts/gpu/gpu-build.sh (carry .gl and .devcarry).
# It runs the kernels tests with both cooperative paths required, measures
# the device's peak, times 8192³ bf16 on the workgroup-scope kernel and on
# the subgroup-scope one at each tile of $KHR_TILES (VKLORA_COOPMAT_TILE
# values, ';'-separated), with the driver's compile statistics, and cuBLAS
# beside them. With $OLD (a lorabench binary of an earlier commit in $B),
# it also runs `bench -preset llama3-8b` with both binaries, for a
# before/after comparison. Logs under $OUT; a short table last.
set -uo pipefail
source "$(dirname "$0")/gpu-env.sh"
export PYTHONUNBUFFERED=1
L=$out/khr.txt
: > "$L"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader | tee "$out/gpu.txt"
if [ "${TESTS:-1}" = 1 ]; then
	(cd kernels && VKLORA_REQUIRE_COOPMAT=1 VKLORA_REQUIRE_COOPMAT2=1 timeout 240 "$B/kernels.test" -test.count=1 > "$out/test-kernels.log" 2>&1)
	echo "kernels tests exit $? ($(tail -1 "$out/test-kernels.log"))"
	grep -E "^\s*--- FAIL|Error:|panic" "$out/test-kernels.log" | head -20
fi
timeout 120 "$B/lorabench" peak -fresh > "$out/peak.txt" 2>&1; echo "peak exit $?" >> "$out/peak.txt"
M=${SIZE:-8192}
{
	echo "## workgroup scope (default path)"
	timeout 90 "$B/lorabench" matmul -sizes "$M" -dtype bf16 -reps 10 -warmup 3 -stats
	IFS=';' read -ra tiles <<< "${KHR_TILES:-}"
	for t in "" "${tiles[@]}"; do
		echo "## subgroup scope, tile '${t:-default}'"
		VKLORA_DISABLE_COOPMAT2=1 VKLORA_COOPMAT_TILE="$t" timeout 90 "$B/lorabench" matmul -sizes "$M" -dtype bf16,f16 -reps 5 -warmup 2 -stats
	done
} >> "$L" 2>&1
timeout 60 python3 scripts/gpu/torch_matmul.py --sizes "$M" > "$out/torch_matmul.txt" 2>&1
if [ -n "${OLD:-}" ]; then
	for bin in "$OLD" lorabench; do
		echo "## $bin bench -preset llama3-8b" >> "$L"
		timeout 150 "$B/$bin" bench -preset llama3-8b -op mlp,qkv,o -pass fwdbwd -reps 5 -warmup 2 ${NOPEAK:-} >> "$L" 2>&1
	done
fi
cat "$out/peak.txt" | tail -20
grep -E "^(##|matmul|mlp|qkv|o |kernel matmul)" "$L" | cut -c1-220
cat "$out/torch_matmul.txt" | tail -6
