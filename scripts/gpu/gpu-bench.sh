#!/usr/bin/env bash
# gpu-bench.sh: the measuring run, on the GPU machine from the repository
# root after scripts/gpu/gpu-build.sh here (copy .gl and .devcarry along).
# It runs the GPU tests (the cooperative-matrix ones must run, not skip),
# generates the full PyTorch conformance suite there and checks it, times
# matmul (ours and cuBLAS's), the LoRA presets, and NF4 against bf16 at
# llama3-8b shapes, then PyTorch's LoRA baseline on the same card, and
# prints a short summary last. Logs go under $OUT, a few files.
#
# PART runs one share: tests (GPU tests and conformance), matmul (ours and
# cuBLAS's), layers (presets, NF4, keep-saved, PyTorch's baseline);
# default all.
set -uo pipefail
source "$(dirname "$0")/gpu-env.sh"
export PYTHONUNBUFFERED=1
part=${PART:-all}
want() { [ "$part" = all ] || [ "$part" = "$1" ]; }
L=$out/lorabench.txt
: > "$L"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader > "$out/gpu.txt"
echo "== $(cat "$out/gpu.txt")"
if want tests; then
	VKLORA_REQUIRE_COOPMAT=1 VKLORA_REQUIRE_COOPMAT2=1 bash scripts/gpu/gpu-remote.sh > "$out/tests.txt" 2>&1
	grep -E "^(PASS|FAIL)" "$out/tests.txt"
	timeout 120 python3 conformance/gen/make_vectors.py --out /tmp/vec --suite full --seed 7 > /tmp/vectors.txt 2>&1
	timeout 120 $B/lorabench check /tmp/vec > "$out/check.txt" 2>&1; echo "check exit $?" >> "$out/check.txt"
	tail -3 "$out/check.txt"
fi
if want matmul; then
	{
		echo "## matmul (cooperative matrices where supported: workgroup scope first)"
		timeout 100 $B/lorabench matmul -sizes 4096,8192 -dtype bf16,f16 -reps 10 -warmup 3
		timeout 60 $B/lorabench matmul -m 8192 -n 14336 -k 4096 -dtype bf16 -reps 10 -warmup 3
		echo "## matmul, subgroup-scope coopmat (VKLORA_DISABLE_COOPMAT2=1)"
		VKLORA_DISABLE_COOPMAT2=1 timeout 60 $B/lorabench matmul -sizes 8192 -dtype bf16 -reps 5 -warmup 1
		echo "## matmul scalar (VKLORA_DISABLE_COOPMAT=1)"
		VKLORA_DISABLE_COOPMAT=1 timeout 60 $B/lorabench matmul -sizes 8192 -dtype bf16 -reps 3 -warmup 1
	} >> "$L" 2>&1
	timeout 60 python3 scripts/gpu/torch_matmul.py --sizes 4096,8192 > "$out/torch_matmul.txt" 2>&1
fi
if want layers; then
	{
		echo "## NF4 vs bf16 at llama3-8b"
		timeout 150 $B/lorabench bench -preset llama3-8b -op matmul,mlp -pass fwdbwd -weight dense,nf4 -reps 5 -warmup 2
		echo "## MLP keeping its saved context (-keep-saved: more memory)"
		timeout 100 $B/lorabench bench -preset llama3-8b -op mlp -pass fwdbwd -keep-saved -reps 5 -warmup 2
		echo "## presets"
		timeout 300 $B/lorabench bench -reps 5 -warmup 2 ${BENCH_ARGS:-}
		echo "bench exit $?"
	} >> "$L" 2>&1
	timeout 120 python3 scripts/gpu/torch_reference.py --json /tmp/torch.json > "$out/torch.txt" 2>&1
fi
grep -v "^\s*$" "$L" | tail -60
cat "$out"/torch*.txt 2>/dev/null | grep -E "matmul|preset|TFLOP|ms" | head -30
