#!/usr/bin/env bash
# tune-coopmat.sh: time bf16 8192³ matmul over subgroup-scope
# cooperative-matrix tile shapes (VKLORA_COOPMAT_TILE=BM,BN,BK,WM,WN) on the
# GPU machine after scripts/gpu/gpu-build.sh here, for every lorabench
# binary in $BIN (default .devcarry/bin). A tile the device
# cannot run falls back to the scalar kernel (about 22 TFLOP/s on an H200).
source "$(dirname "$0")/gpu-env.sh"
for bin in "$B"/lorabench*; do
	for tile in ${TILES:-"" 128,128,32,64,64 128,128,32,32,64 128,128,16,64,32 256,128,16,64,64 128,256,16,64,64 64,64,32,32,32}; do
		r=$(VKLORA_COOPMAT_TILE=$tile timeout 60 "$bin" matmul -sizes ${SIZE:-8192} -dtype ${DTYPE:-bf16} -reps 5 -warmup 2 2>&1 | tail -1)
		echo "$(basename "$bin") tile=[$tile] $r"
	done
done
