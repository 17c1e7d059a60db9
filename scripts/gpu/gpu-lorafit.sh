#!/usr/bin/env bash
# gpu-lorafit.sh: lorafit against PyTorch + PEFT on the GPU machine, from the
# repository root after scripts/gpu/gpu-build.sh here (copy .gl and
# .devcarry along). scripts/gpu/lorafit_peft.py runs lorafit at the tiny
# preset and at PRESET (default llama3-8b) with LAYERS, BATCH, STEPS and R,
# loads each adapter with PEFT and compares its outputs with vklora's, then
# times the same loop in PyTorch; the log is $OUT/lorafit.txt, the summary
# its last line. EXTRA adds flags of lorafit_peft.py (e.g. --adapter-dtype bf16).
set -euo pipefail
source "$(dirname "$0")/gpu-env.sh"
export PYTHONUNBUFFERED=1
python3 scripts/gpu/lorafit_peft.py --lorafit "$B/lorafit" --preset "${PRESET:-llama3-8b}" \
	--layers "${LAYERS:-1}" --batch "${BATCH:-0}" --steps "${STEPS:-50}" --r "${R:-16}" \
	--workdir "${WORKDIR:-/tmp/lorafit-peft}" ${EXTRA:-} 2>&1 | tee "$out/lorafit.txt"
