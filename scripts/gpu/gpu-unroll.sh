#!/usr/bin/env bash
# gpu-unroll.sh: the workgroup-scope kernel's K-step unroll on the GPU
# machine, after scripts/gpu/gpu-build.sh here (copy .gl and .devcarry
# along). Times bf16 matmuls with VKLORA_COOPMAT2_TILE=BM,BN,BK,WG,UNROLL
# over TILES at SHAPES (X·Wᵀ, one lorabench -sweep per shape), then the default path against the
# subgroup-scope kernel in every form at 8192³ (FORMS=0 skips it), the
# presets (PRESETS, "" skips them; PRESET_SWEEP sweeps an engine switch
# over them) and PyTorch's eager baseline and cuBLAS
# in the same call (TORCH=0 skips them). One line per row; with
# VKLORA_LOG_KERNELS=1 (and __GL_SHADER_DISK_CACHE=0 for cold builds) also
# each workgroup-scope kernel's compile time.
set -uo pipefail
source "$(dirname "$0")/gpu-env.sh"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
row() { grep -E '^matmul |^kernel' | tr '\n' ' ' | tr -s ' ' | sed -E 's/Binary Size=[0-9.e+]+ //; s/Stack Size=0 //; s/Local Memory Size=[0-9.e+]+ //' | cut -c1-230; }
mm() { timeout 60 "$B/lorabench" matmul -m "$1" -n "$2" -k "$3" -form "${4:-nt}" -dtype bf16 -reps 10 -warmup 3 -no-peak -stats 2>&1 | row; }
SHAPES=${SHAPES:-"8192,8192,8192 8192,14336,4096 8192,4096,14336"}
# One process per shape: lorabench -sweep sets each case up (inputs, the
# float64 reference) once and times it on every tile's engine.
tiles=$(echo ${TILES:-128,128,32,128,1 128,128,32,128,8 128,256,64,256,1 128,256,64,256,8 128,256,64,256,16} | tr ' ' ';')
for s in $SHAPES; do
	IFS=, read -r m n k <<< "$s"
	timeout 300 "$B/lorabench" matmul -m "$m" -n "$n" -k "$k" -dtype bf16 -reps 10 -warmup 3 -no-peak \
		-sweep "VKLORA_COOPMAT2_TILE=$tiles" 2>&1 | grep -E '^matmul |built kernel matmul_cm2' | cut -c1-160
done
if [ "${FORMS:-1}" = 1 ]; then
	for f in nt nn tn; do
		echo "default $f $(mm 8192 8192 8192 $f)"
		echo "subgroup-scope $f $(VKLORA_DISABLE_COOPMAT2=1 mm 8192 8192 8192 $f)"
	done
fi
# PRESET_SWEEP (e.g. 'VKLORA_COOPMAT2_UNROLL=8;16') times each preset case
# once per value in one process, its kernels for all values built in
# parallel first.
for p in ${PRESETS-llama3-8b gemma-2b qwen2.5-0.5b}; do
	timeout 200 "$B/lorabench" bench -preset "$p" -op mlp,qkv,o -pass fwdbwd -reps 5 -no-peak \
		${PRESET_SWEEP:+-sweep "$PRESET_SWEEP"} 2>&1 | grep -E '^(mlp|qkv|o ) ' | cut -c1-170
done
if [ "${TORCH:-1}" = 1 ]; then
	timeout 150 python3 scripts/gpu/torch_reference.py --preset ${PRESETS-llama3-8b gemma-2b qwen2.5-0.5b} 2>&1 | grep '^{' | cut -c1-200
	timeout 100 python3 scripts/gpu/torch_matmul.py --shapes "$(echo $SHAPES | tr ' ' ';')" --dtype bf16 2>&1 | tail -3
fi
