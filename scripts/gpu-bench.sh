#!/usr/bin/env bash
# gpu-bench.sh: the one device call of a measuring session, run on the GPU
# machine from the repository root after scripts/gpu-build.sh here (carry
# .gl and .devcarry). It runs the GPU tests, generates the full PyTorch
# conformance suite there and checks it, times matmul and the LoRA presets
# with lorabench, then PyTorch's baseline on the same card, and prints a
# short summary last. Everything is logged under $OUT.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export PYTHONUNBUFFERED=1
bash scripts/gpu-remote.sh > "$out/tests.txt" 2>&1
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
B=.devcarry/bin
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader > "$out/gpu.txt"
(cd .devcarry && timeout 120 python3 make_vectors.py --out /tmp/vec --suite full --seed 7 > "$out/vectors.txt" 2>&1)
timeout 120 $B/lorabench check /tmp/vec > "$out/check.txt" 2>&1; echo "check exit $?" >> "$out/check.txt"
timeout 150 $B/lorabench matmul -sizes 1024,4096,8192 -dtype f32,bf16 -reps 5 -warmup 2 > "$out/matmul.txt" 2>&1
timeout 240 $B/lorabench bench -reps 5 -warmup 2 ${BENCH_ARGS:-} > "$out/bench.txt" 2>&1; echo "bench exit $?" >> "$out/bench.txt"
(cd .devcarry && timeout 120 python3 torch_reference.py --json "$out/torch.json" > "$out/torch.txt" 2>&1)
echo "== $(cat "$out/gpu.txt")"; grep -E "^(PASS|FAIL)" "$out/tests.txt"
tail -3 "$out/check.txt"; tail -8 "$out/matmul.txt"; tail -30 "$out/bench.txt"; grep -c preset "$out/torch.txt"
