#!/usr/bin/env bash
# gpu-cm2.sh: one run for the workgroup-scope (VK_NV_cooperative_matrix2)
# matmul, on the GPU machine after scripts/gpu/gpu-build.sh here (copy .gl
# and .devcarry along): the device's coopmat2 configurations, the
# cooperative matmul tests on both kernels (required, not skipped), bf16
# 8192³ with the workgroup-scope kernel over tiles
# (VKLORA_COOPMAT2_TILE=BM,BN,BK,WG), the subgroup-scope kernel and cuBLAS
# on the same card. Logs under $OUT.
set -uo pipefail
source "$(dirname "$0")/gpu-env.sh"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
$B/lorabench devices > "$out/devices.txt" 2>&1; grep -i "coopmat2\|cooperative" "$out/devices.txt" | head -20
if [ "${SKIP_TESTS:-0}" != 1 ]; then
	(cd kernels && VKLORA_REQUIRE_COOPMAT=1 VKLORA_REQUIRE_COOPMAT2=1 timeout 300 "$B/kernels.test" -test.count=1 -test.run "${TESTS:-CoopMat}" > "$out/test-kernels.log" 2>&1)
	echo "kernels tests exit $? ($(tail -1 "$out/test-kernels.log"))"; grep -E "^\s*--- FAIL|Error Trace|Error:|rel err|panic" "$out/test-kernels.log" | head -20
fi
S=${SIZE:-8192}
[ "${SWEEP:-1}" = 1 ] && for tile in ${TILES:-"" 128,128,16,128 128,128,64,128 256,128,32,256 128,256,32,256 256,256,32,256 128,256,64,256 64,64,32,128}; do
	r=$(VKLORA_COOPMAT2_TILE=$tile timeout 60 "$B/lorabench" matmul -sizes $S -dtype ${DTYPE:-bf16} -reps 10 -warmup 3 2>&1 | tail -1)
	echo "cm2 tile=[$tile] $r"
done
r=$(VKLORA_DISABLE_COOPMAT2=1 timeout 60 "$B/lorabench" matmul -sizes $S -dtype ${DTYPE:-bf16} -reps 10 -warmup 3 2>&1 | tail -1)
echo "subgroup coopmat $r"
if [ "${NF4:-1}" = 1 ]; then
	timeout 200 "$B/lorabench" bench -preset llama3-8b -op matmul,mlp -pass fwdbwd -weight dense,nf4 -reps 10 > "$out/nf4.txt" 2>&1
	grep -v "^\s*$" "$out/nf4.txt" | tail -14
fi
if [ "${PROFILE:-0}" = 1 ]; then
	# Where a layer step's time goes: every dispatch timed, summed by kernel.
	timeout 200 "$B/lorabench" bench -preset llama3-8b -op matmul_lora,mlp -reps 5 -profile > "$out/profile-table.txt" 2> "$out/profile.txt"
	cat "$out/profile-table.txt" | tail -4; grep -E "^profile|^  [a-z]" "$out/profile.txt"
fi
timeout 120 python3 scripts/gpu/torch_matmul.py --sizes $S > "$out/torch-matmul.txt" 2>&1; cat "$out/torch-matmul.txt"
