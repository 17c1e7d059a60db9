#!/usr/bin/env bash
# gpu-clocks.sh: on the GPU machine (after scripts/gpu/gpu-build.sh here;
# copy .gl and .devcarry along), samples the SM clock every 50 ms with
# nvidia-smi while lorabench times bf16 8192³ with the GPU-time warm-up off and on, and prints
# each run's repeats and the clock trace. It is how the idle-clock ramp
# behind docs/PERFORMANCE.md's "Clocks" section was found.
set -uo pipefail
source "$(dirname "$0")/gpu-env.sh"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,pstate,power.draw --format=csv,noheader -lms 50 > "$out/clocks.csv" 2>&1 &
smi=$!
for ms in 0 400; do
	timeout 60 "$B/lorabench" matmul -sizes 8192 -dtype bf16 -reps 30 -warmup 3 -warmup-ms $ms -json 2>/dev/null > "$out/warm$ms.json"
	python3 -c "
import json
r = json.loads(open('$out/warm$ms.json').readline())
print('warmup-ms $ms: median %.2f min %.2f ms; repeats:' % (r['ms_median'], r['ms_min']), ' '.join('%.1f' % x for x in r['ms_times']))"
done
kill $smi
awk -F, '{print $2, $4, $5}' "$out/clocks.csv" | uniq -c
