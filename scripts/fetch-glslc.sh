#!/usr/bin/env bash
# fetch-glslc.sh: install the pinned shader compiler into .tools/.
#
# Every committed .spv in shaders/spv is built by Debian 13 (trixie)'s
# glslc 2025.2-1 (glslang 15.1), the oldest Debian glslc with
# GL_KHR_cooperative_matrix. It needs glibc 2.38, so on Debian 12 it cannot
# be installed; instead we unpack it, with trixie's libc6, libstdc++6 and
# libgcc-s1, into .tools/trixie/root and run it through trixie's own dynamic
# loader (see docs/vulkan-notes.md, "Shader compilers"). Nothing outside
# .tools/ is touched: apt runs with private lists, cache and source list.
#
# Result: .tools/bin/glslc and .tools/bin/spirv-val (wrappers). Idempotent:
# a second run only prints the version. Works as root or as a user (no sudo).
#
# Env: DEBIAN_MIRROR overrides the mirror (default: the host's first
# Debian URI, then http://deb.debian.org/debian).
set -euo pipefail

GLSLC_VERSION=2025.2-1
SPIRV_TOOLS_VERSION=2025.1~rc1-1
STAMP="glslc=$GLSLC_VERSION libshaderc1=$GLSLC_VERSION spirv-tools=$SPIRV_TOOLS_VERSION"

die() { echo "fetch-glslc: error: $*" >&2; exit 1; }

root=$(cd "$(dirname "$0")/.." && pwd)
tools=$root/.tools
d=$tools/trixie
bin=$tools/bin
mkdir -p "$d" "$bin"

# One fetch at a time (make shaders and go test may race on a fresh clone).
if command -v flock >/dev/null 2>&1; then
	exec 9>"$tools/.fetch.lock"
	flock 9
fi

installed() {
	[ -x "$bin/glslc" ] && [ -x "$bin/spirv-val" ] &&
		[ "$(cat "$d/STAMP" 2>/dev/null)" = "$STAMP" ] &&
		"$bin/glslc" --version >/dev/null 2>&1 &&
		"$bin/spirv-val" --version >/dev/null 2>&1
}

if installed; then
	"$bin/glslc" --version | sed -n 1p
	exit 0
fi

arch=$(dpkg --print-architecture 2>/dev/null || echo unknown)
[ "$arch" = amd64 ] || die "only amd64 hosts are supported (this is '$arch')"
command -v apt-get >/dev/null || die "apt-get not found: this script needs a Debian-based host"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found"

# The host's Debian mirror: deb822 sources first, then sources.list, then the
# public redirector. Security mirrors carry no glslc, so skip them.
host_mirror() {
	local f=/etc/apt/sources.list.d/debian.sources u=""
	if [ -r "$f" ]; then
		u=$(awk '/^URIs:/{for(i=2;i<=NF;i++) if ($i !~ /security/) {print $i; exit}}' "$f")
	fi
	if [ -z "$u" ] && [ -r /etc/apt/sources.list ]; then
		# deb [opts] URI suite comp...
		u=$(awk '$1=="deb"{i=2; if ($2 ~ /^\[/) {while (i<=NF && $i !~ /\]$/) i++; i++}
			if ($i !~ /security/) {print $i; exit}}' /etc/apt/sources.list)
	fi
	echo "${u:-http://deb.debian.org/debian}"
}

mirrors=()
if [ -n "${DEBIAN_MIRROR:-}" ]; then
	mirrors+=("$DEBIAN_MIRROR")
else
	m=$(host_mirror)
	mirrors+=("$m")
	[ "${m%/}" = http://deb.debian.org/debian ] || mirrors+=(http://deb.debian.org/debian)
fi

# Private apt state: our own source list, lists, cache and archives.
aptopts=(
	-o "Dir::Etc::SourceList=$d/sources.list"
	-o "Dir::Etc::SourceParts=/dev/null"
	-o "Dir::State::Lists=$d/lists"
	-o "Dir::Cache=$d/cache"
	-o "Dir::Cache::archives=$d/cache/archives"
	-o "APT::Architecture=amd64"
	-o "APT::Architectures=amd64"
	-o "Acquire::Languages=none"
	-o "APT::Sandbox::User=$(id -un)"
	-o "Debug::NoLocking=1"
	-q
)
pkgs=(
	"glslc=$GLSLC_VERSION"
	"libshaderc1=$GLSLC_VERSION"
	"spirv-tools=$SPIRV_TOOLS_VERSION"
	libc6/trixie libstdc++6/trixie libgcc-s1/trixie
)

fetch_from() {
	local uri=$1 log=$d/apt.log
	echo "fetch-glslc: fetching ${pkgs[*]} from $uri (trixie)" >&2
	rm -rf "$d/lists" "$d/cache" "$d/debs"
	mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/debs"
	echo "deb $uri trixie main" >"$d/sources.list"
	if ! apt-get "${aptopts[@]}" update >"$log" 2>&1; then
		echo "fetch-glslc: apt-get update failed for $uri:" >&2
		sed 's/^/  /' "$log" >&2
		return 1
	fi
	if grep -Eq '^(W|E):' "$log"; then
		# e.g. an unsigned or unreachable trixie Release: do not trust it.
		echo "fetch-glslc: apt-get update reported problems for $uri:" >&2
		sed 's/^/  /' "$log" >&2
		return 1
	fi
	if ! (cd "$d/debs" && apt-get "${aptopts[@]}" download "${pkgs[@]}") >"$log" 2>&1; then
		echo "fetch-glslc: apt-get download failed from $uri:" >&2
		sed 's/^/  /' "$log" >&2
		return 1
	fi
}

ok=""
for m in "${mirrors[@]}"; do
	if fetch_from "$m"; then ok=1; break; fi
done
[ -n "$ok" ] || die "could not fetch the pinned glslc $GLSLC_VERSION from Debian trixie (tried: ${mirrors[*]}).
  Check network access to a Debian mirror, or set DEBIAN_MIRROR=http://<mirror>/debian,
  or point GLSLC and SPIRV_VAL at a glslc $GLSLC_VERSION / spirv-val you already have."

rm -rf "$d/root"
for f in "$d"/debs/*.deb; do
	dpkg-deb -x "$f" "$d/root" || die "cannot unpack $f"
done
rm -rf "$d/lists" "$d/cache"

L=$d/root/usr/lib/x86_64-linux-gnu
[ -x "$L/ld-linux-x86-64.so.2" ] || die "trixie's loader is missing from $L"

# Wrappers find the unpacked tree relative to themselves, so the repo can move.
for tool in glslc spirv-val; do
	[ -x "$d/root/usr/bin/$tool" ] || die "$tool missing from the unpacked packages"
	cat >"$bin/$tool.tmp" <<EOF
#!/bin/sh
# Written by scripts/fetch-glslc.sh: Debian trixie's $tool ($STAMP),
# run by trixie's own loader and libraries (it needs glibc 2.38).
r=\$(dirname "\$0")/../trixie/root
L=\$r/usr/lib/x86_64-linux-gnu
exec "\$L/ld-linux-x86-64.so.2" --library-path "\$L" "\$r/usr/bin/$tool" "\$@"
EOF
	chmod +x "$bin/$tool.tmp"
	mv "$bin/$tool.tmp" "$bin/$tool"
done
echo "$STAMP" >"$d/STAMP"

installed || die "the installed glslc/spirv-val do not run; see: $bin/glslc --version"
"$bin/glslc" --version | sed -n 1p
