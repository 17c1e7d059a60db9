#!/usr/bin/env bash
# gpu-coopmat.sh: a short run for cooperative-matrix work, on the GPU
# machine after scripts/gpu/gpu-build.sh here (copy .gl and .devcarry
# along): the kernels tests that exercise the matmul kernels (cooperative
# tests required to run, not skip), then plain matmul throughput with and
# without cooperative matrices and cuBLAS's on the same card. Logs under
# $OUT.
set -uo pipefail
source "$(dirname "$0")/gpu-env.sh"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
(cd kernels && VKLORA_REQUIRE_COOPMAT=1 timeout 300 "$B/kernels.test" -test.count=1 -test.run "${TESTS:-CoopMat|Matmul|NF4}" > "$out/test-kernels.log" 2>&1)
echo "kernels tests exit $? ($(tail -1 "$out/test-kernels.log"))"; grep -E "^\s*--- FAIL|Error Trace|rel err|panic" "$out/test-kernels.log" | head -20
for d in ${DTYPES:-bf16,f16}; do
	timeout 120 $B/lorabench matmul -sizes ${SIZES:-4096,8192} -dtype "$d" -form ${FORM:-nt} -reps 10 -warmup 3 > "$out/matmul-$d.txt" 2>&1
	tail -4 "$out/matmul-$d.txt"
done
VKLORA_DISABLE_COOPMAT=1 timeout 120 $B/lorabench matmul -sizes 8192 -dtype bf16 -reps 3 -warmup 1 > "$out/matmul-scalar.txt" 2>&1
echo "scalar:"; tail -2 "$out/matmul-scalar.txt"
timeout 120 python3 scripts/gpu/torch_matmul.py --sizes ${SIZES:-4096,8192} > "$out/torch-matmul.txt" 2>&1; cat "$out/torch-matmul.txt"
