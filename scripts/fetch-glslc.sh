#!/usr/bin/env bash
# fetch-glslc.sh: install the pinned shader compiler into .tools/.
#
# Every committed .spv in shaders/spv is built by Debian 13 (trixie)'s
# glslc 2025.2-1 (glslang 15.1), the oldest Debian glslc with
# GL_KHR_cooperative_matrix. It needs glibc 2.38, so on Debian 12 it cannot
# be installed; instead we unpack it, with trixie's libc6, libstdc++6 and
# libgcc-s1, into .tools/trixie/root and run it through trixie's own dynamic
# loader (shaders/doc.go, "The pinned compiler", says why this glslc).
# Nothing outside .tools/ is touched: apt runs with private lists, cache
# and source list.
#
# Result: .tools/bin/glslc and .tools/bin/spirv-val (wrappers). Idempotent:
# a second run only prints the version. Works as root or as a user (no sudo).
#
# The packages come from the Debian mirror this machine's apt already uses
# (its sources, below), asked for trixie; there is no built-in fallback.
# Env: DEBIAN_MIRROR=URI overrides the mirror.
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

# The machine's own Debian mirrors, in apt's order: the URIs of enabled deb
# stanzas in sources.list.d/*.sources (deb822), then the URI of every "deb"
# line in sources.list and sources.list.d/*.list. Security archives carry
# no glslc, so they are skipped; duplicates are tried once.
host_mirrors() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk 'BEGIN { RS = ""; FS = "\n" }
			{
				uris = ""; on = 1; deb = 0
				for (i = 1; i <= NF; i++) {
					if ($i ~ /^Enabled:[ \t]*no/) on = 0
					if ($i ~ /^Types:/ && $i ~ /[ \t]deb([ \t]|$)/) deb = 1
					if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
				}
				if (on && deb) { n = split(uris, u, /[ \t]+/); for (j = 1; j <= n; j++) print u[j] }
			}' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		# deb [options] URI suite components...
		awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ } print $i }' "$f"
	done
}

mirrors=()
if [ -n "${DEBIAN_MIRROR:-}" ]; then
	mirrors+=("$DEBIAN_MIRROR")
else
	while IFS= read -r m; do
		[ -n "$m" ] && mirrors+=("$m")
	done < <(host_mirrors | grep -v security | awk '!seen[$0]++')
	[ ${#mirrors[@]} -gt 0 ] || die "no Debian mirror in this machine's apt sources
  (URIs: of /etc/apt/sources.list.d/*.sources, deb lines of /etc/apt/sources.list and sources.list.d/*.list).
  Set DEBIAN_MIRROR=<URI of a Debian archive that has trixie>, or point GLSLC and SPIRV_VAL
  at a glslc $GLSLC_VERSION / spirv-val you already have."
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
  Check network access to that mirror, or set DEBIAN_MIRROR=<URI of a Debian archive that has trixie>,
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
