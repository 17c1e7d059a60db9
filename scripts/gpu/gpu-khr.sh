#!/usr/bin/env bash
# gpu-khr.sh: one measuring call for the cooperative-matrix kernels, on the
# GPU machine after scripts/gpu/gpu-build.sh (carry .gl and .devcarry).
#
#   TESTRUN   kernels tests to run first (a -test.run pattern; both
#             cooperative paths required), "" for none
#   PEAK=1    lorabench peak -fresh
#   TORCH=1   cuBLAS (through PyTorch) at every shape of SHAPES, bf16
#   SHAPES    "M,N,K;..." matmul shapes timed on the workgroup-scope kernel
#             and on the subgroup-scope one at each tile of KHR_TILES
#             (VKLORA_COOPMAT_TILE values, ';'-separated), with the
#             driver's compile statistics
#   OLD       a lorabench binary of an earlier commit in $B: the presets of
#             PRESETS (default llama3-8b) with both, for a before/after
#             comparison
#   PROFILE   ops (e.g. qkv) profiled per dispatch with both binaries
#   PACKAGES  other test binaries to run first (e.g. "lora autograd")
#   MATMUL_ARGS extra lorabench matmul flags (e.g. -no-peak)
#   FORMS     operand forms timed at every shape (lorabench matmul -form;
#             default "nt", e.g. "nt nn tn")
#
# lorabench's own VKLORA_* switches pass through: VKLORA_COOPMAT_SHAPE=16,8,16
# times the subgroup-scope kernel at that reported shape, and the kernels
# tests' TestCoopMatEveryShape covers every reported one.
#
# Logs under $OUT; a short table last.
set -uo pipefail
source "$(dirname "$0")/gpu-env.sh"
L=$out/khr.txt
: > "$L"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader | tee "$out/gpu.txt"
if [ -n "${TESTRUN:-}" ]; then
	(cd kernels && VKLORA_REQUIRE_COOPMAT=1 VKLORA_REQUIRE_COOPMAT2=1 timeout 200 "$B/kernels.test" -test.count=1 -test.v -test.run "$TESTRUN" > "$out/test-kernels.log" 2>&1)
	echo "kernels tests exit $?"
	grep -E "^(--- |ok|FAIL|PASS)|^\s+--- FAIL|Error:|panic" "$out/test-kernels.log" | tail -25
fi
for p in ${PACKAGES:-}; do
	(cd "$p" && timeout 90 "$B/$p.test" -test.count=1 > "$out/test-$p.log" 2>&1)
	echo "$p tests exit $? ($(tail -1 "$out/test-$p.log"))"
	grep -E "^\s*--- FAIL|Error:|panic" "$out/test-$p.log" | head -10
done
[ "${PEAK:-0}" = 1 ] && timeout 120 "$B/lorabench" peak -fresh > "$out/peak.txt" 2>&1
IFS=';' read -ra shapes <<< "${SHAPES:-}"
if [ "${TORCH:-0}" = 1 ] && [ -n "${SHAPES:-}" ]; then
	echo "## cuBLAS" >> "$L"
	timeout 120 python3 scripts/gpu/torch_matmul.py --shapes "$SHAPES" --dtype bf16 >> "$L" 2>&1
fi
IFS=';' read -ra tiles <<< "${KHR_TILES:-}"
for f in ${FORMS:-nt}; do
for s in "${shapes[@]}"; do
	IFS=',' read -r m n k <<< "$s"
	{
		echo "## $s $f workgroup scope"
		timeout 60 "$B/lorabench" matmul -m "$m" -n "$n" -k "$k" -form "$f" -dtype bf16 -reps 10 -warmup 3 -stats ${MATMUL_ARGS:-}
		for t in "" "${tiles[@]}"; do
			echo "## $s $f subgroup scope, tile '${t:-default}'"
			VKLORA_DISABLE_COOPMAT2=1 VKLORA_COOPMAT_TILE="$t" timeout 60 "$B/lorabench" matmul -m "$m" -n "$n" -k "$k" -form "$f" -dtype bf16 -reps 10 -warmup 3 -stats ${MATMUL_ARGS:-}
		done
	} >> "$L" 2>&1
done
done
if [ -n "${OLD:-}" ]; then
	for pr in ${PRESETS:-llama3-8b}; do
	for bin in "$OLD" lorabench; do
		echo "## $bin bench -preset $pr" >> "$L"
		timeout 150 "$B/$bin" bench -preset "$pr" -op mlp,qkv,o -pass fwdbwd -reps 5 -warmup 2 >> "$L" 2>&1
	done
	done
fi
for op in ${PROFILE:-}; do
	for bin in ${OLD:-} lorabench; do
		timeout 60 "$B/$bin" bench -preset llama3-8b -op "$op" -pass fwdbwd -reps 3 -warmup 1 -profile > "$out/profile-$op-$bin.txt" 2>&1
	done
done
grep -E "^(##|matmul|mlp|qkv|o |kernel matmul|\\{)" "$L" | sed -E 's/Binary Size=[0-9]+ //; s/Stack Size=0 //' | cut -c1-200
