#!/usr/bin/env bash
# gpu-soak.sh: the 100 000-step soak of package lora on the GPU machine,
# after scripts/gpu/gpu-build.sh here (copy .gl and .devcarry along):
# TestSoakMLPStepsLeakNothing at STEPS (default 100000) MLP fwd+bwd steps,
# then TestSoakDeviceCyclesLeakNothing at CYCLES (default 30), under one
# TIMEOUT (default 560 s). FLUSH (default 10) empties the device's buffer
# cache every that many steps: at 1, every step allocates and frees all its
# buffers, about 6 ms of driver calls per step on the H200, so 100 000 steps
# do not fit in the machine's 10-minute call. The step soak logs its growth every tenth of its
# steps, so a run cut by the timeout still shows its trend. Log:
# $OUT/soak.txt. Its GPU work is tiny (an MLP of 3×8×16), so it can run in
# the background of other tests; not of timings.
set -uo pipefail
source "$(dirname "$0")/gpu-env.sh"
cd lora
VKLORA_SOAK_STEPS=${STEPS:-100000} VKLORA_SOAK_CYCLES=${CYCLES:-30} VKLORA_SOAK_FLUSH_EVERY=${FLUSH:-10} timeout "${TIMEOUT:-560}" \
	"$B/lora.test" -test.run '^TestSoak' -test.v -test.timeout 0 > "$out/soak.txt" 2>&1
echo "soak exit $? ($(grep -c 'soak:' "$out/soak.txt") progress lines)"
grep -E 'soak:|^--- |^(ok|FAIL|PASS)' "$out/soak.txt" | tail -14
