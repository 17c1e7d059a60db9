#!/usr/bin/env bash
# gpu-ext.sh: PEFT's extensions on the GPU machine, in one call (after
# scripts/gpu/gpu-build.sh here; copy .gl and .devcarry with the tree):
#   1. conformance/gen/peft_vectors.py --small writes testdata/peft-small with
#      real PEFT (copied back as $out/peft-small.tgz), and the conformance test
#      and `lorabench check` run it on this GPU;
#   2. lorabench bench at PRESET (default llama3-8b), MLP, QKV and O fwd+bwd:
#      plain LoRA, -dropout 0.05, -lora-bias and -dora, then the same features
#      in PEFT itself (torch_peft_ext.py), for the cost table in
#      docs/PERFORMANCE.md;
#   3. MERGED=DIR: scripts/gpu/check_merged.py on every case DIR holds
#      (VKLORA_MERGE_EXPORT=DIR go test ./hf -run TestWriteMergedFromPEFT).
# Knobs: PRESET, REPS (5), SKIP_GEN=1, SKIP_BENCH=1, BENCH_ARGS (extra flags).
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/gpu/gpu-env.sh
P=${PRESET:-llama3-8b}
if [ -z "${SKIP_GEN:-}" ]; then
	python3 conformance/gen/peft_vectors.py --small --out testdata/peft-small >"$out/peft-gen.log" 2>&1 || { tail -20 "$out/peft-gen.log"; exit 1; }
	tail -1 "$out/peft-gen.log"
	tar czf "$out/peft-small.tgz" testdata/peft-small
	(cd conformance && "$B/conformance.test" -test.run 'TestPEFTSmallSuiteOnDevice' -test.v 2>&1 | grep -E '^(--- |ok|PASS|FAIL)' | tail -3)
	"$B/lorabench" check testdata/peft-small 2>&1 | tail -2
fi
if [ -z "${SKIP_BENCH:-}" ]; then
	for f in "" "-dropout 0.05" "-lora-bias" "-dora"; do
		echo "== lorabench bench -preset $P $f"
		# shellcheck disable=SC2086
		timeout 200 "$B/lorabench" bench -preset "$P" -op mlp,qkv,o -pass fwdbwd -reps "${REPS:-5}" -no-peak $f ${BENCH_ARGS:-} 2>&1 |
			grep -E '^(mlp|qkv|o |op |summary)' | cut -c1-170
	done
	python3 scripts/gpu/torch_peft_ext.py --preset "$P" 2>&1 | tail -4
fi
if [ -n "${MERGED:-}" ]; then
	for c in "$MERGED"/*/; do
		args=("${c}merged")
		case "$c" in *nf4*) ;; *) args+=(--peft "${c}base" "${c}adapter") ;; esac
		echo "== check_merged $(basename "$c")"
		python3 scripts/gpu/check_merged.py "${args[@]}" 2>&1 | tail -2
	done
fi
