# gpu-env.sh: sourced first by every scripts/gpu/gpu-*.sh on the GPU
# machine (after scripts/gpu/gpu-build.sh here; copy .gl and .devcarry with
# the tree). It unpacks the binaries gpu-build.sh gzipped, installs the
# copied Vulkan loader (dpkg -x into /, so it runs as root), points the
# loader at NVIDIA's ICD unless VK_DRIVER_FILES is set, and sets out (logs:
# $OUT, else /tmp/out) and B (binaries: $BIN, else .devcarry/bin;
# absolute). Idempotent.
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
B=$_root/${BIN:-.devcarry/bin}
