# gpu-env.sh: sourced first by every scripts/gpu/gpu-*.sh on the GPU
# machine (after scripts/gpu/gpu-build.sh here; copy .gl and .devcarry with
# the tree). It unpacks the binaries gpu-build.sh gzipped, installs the
# copied Vulkan loader (dpkg -x into /, so it runs as root), points the
# loader at NVIDIA's ICD unless VK_DRIVER_FILES is set, and sets out (logs:
# $OUT, else /tmp/out), B (binaries: $BIN, else .devcarry/bin; absolute)
# and VKLORA_PIPELINE_CACHE (below). Idempotent.
_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
for f in "$_root"/.devcarry/bin/*.gz; do
	[ -e "$f" ] && gunzip -f "$f"
done
chmod +x "$_root"/.devcarry/bin/* 2>/dev/null || true
for f in "$_root"/.gl/*.deb; do
	[ -e "$f" ] && dpkg -x "$f" /
done
ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
out=${OUT:-/tmp/out}
mkdir -p "$out"
# Compiled kernels between calls (vk.Options.PipelineCacheDir): NVIDIA's
# compiler takes 11-39 s per workgroup-scope matmul kernel and every call
# starts on a fresh machine. The cache is kept in $out/pipelines, which
# comes back with the logs; copy it to .devcarry/pipelines here to seed the
# next call.
if [ -z "${VKLORA_PIPELINE_CACHE:-}" ]; then
	mkdir -p "$out/pipelines"
	cp -n "$_root"/.devcarry/pipelines/*.vkpc "$out/pipelines/" 2>/dev/null || true
	export VKLORA_PIPELINE_CACHE=$out/pipelines
fi
B=$_root/${BIN:-.devcarry/bin}
