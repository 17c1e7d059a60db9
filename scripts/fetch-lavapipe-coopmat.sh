#!/usr/bin/env bash
# fetch-lavapipe-coopmat.sh: unpack Debian sid's lavapipe, which has
# VK_KHR_cooperative_matrix, into .tools/lvp-sid for the second test run.
#
# Debian 12's lavapipe (Mesa 22.3) has no cooperative matrices, so CI's
# system driver never runs shaders/matmul_coopmat.comp. Sid's (Mesa 26, LLVM
# 22) does: 8x8x8 at subgroup scope (subgroup 8) for f16 with f16 or f32
# accumulation, and for u8/s8; no bf16, no workgroup scope. It needs sid's
# glibc, so like scripts/fetch-glslc.sh we unpack the exact packages pinned
# in scripts/lavapipe-coopmat.pins (name, version, sha256) with sid's libc
# into .tools/lvp-sid/root and run test binaries through sid's own dynamic
# loader (scripts/lvp-coopmat-exec.sh). Nothing outside .tools/ is touched:
# apt runs with private lists, cache, status and source list.
#
# Result: .tools/lvp-sid/root (the unpacked packages, other Mesa drivers and
# Mesa's layers deleted; sid's validation layer kept) and .tools/lvp-sid/lvp_icd.json (the ICD, absolute path).
# Idempotent: with a complete cache it prints one line and downloads nothing.
#
#   scripts/fetch-lavapipe-coopmat.sh          fetch, check, unpack
#   scripts/fetch-lavapipe-coopmat.sh --repin  rewrite the pins from what sid
#                                              serves now, then fetch
#
# Sid moves: when it stops serving a pinned version this fails and says
# which; re-pin, run `make test-coopmat`, commit the pins.
#
# Env: DEBIAN_MIRROR overrides the mirror (default: the host's Debian mirror
# from /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list).
set -euo pipefail

me=fetch-lavapipe-coopmat
die() { echo "$me: error: $*" >&2; exit 1; }

mode=fetch
case "${1:-}" in
"") ;;
--repin) mode=repin ;;
*) die "usage: $0 [--repin]" ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
pins=$root/scripts/lavapipe-coopmat.pins
d=$root/.tools/lvp-sid
L=$d/root/usr/lib/x86_64-linux-gnu
icd=$d/lvp_icd.json
mkdir -p "$d"

# The packages whose dependency closure is pinned (the validation layer:
# the tests run with it, and Debian 12's predates Vulkan 1.4 and
# VK_KHR_cooperative_matrix), and the closure's members that lavapipe, the
# loader and the layer never load (other Mesa drivers' libraries, data and
# docs), left out of the pins. The unpack step checks that every library
# they need resolves inside the tree.
TOP=(mesa-vulkan-drivers libvulkan1 vulkan-validationlayers)
UNUSED='^(gcc-[0-9]+-base|libc-gconv-modules-extra|libdrm-common|libdrm-amdgpu1|libelf1(t64)?|libpng16-16(t64)?|libx11-data)$'

# One fetch at a time (go test -exec and make may race on a fresh clone).
if command -v flock >/dev/null 2>&1; then
	exec 9>"$d/.lock"
	flock 9
fi

[ -r "$pins" ] || [ "$mode" = repin ] || die "missing $pins (run $0 --repin to create it)"

# The fingerprint of an unpacked tree: the pins it came from and where it is
# (the ICD file names an absolute path).
stamp() { echo "$(sha256sum <"$pins" | cut -d' ' -f1) $d"; }

installed() {
	[ -r "$pins" ] && [ "$(cat "$d/STAMP" 2>/dev/null)" = "$(stamp)" ] &&
		[ -x "$L/ld-linux-x86-64.so.2" ] && [ -f "$L/libvulkan_lvp.so" ] && [ -f "$L/libvulkan.so.1" ] &&
		grep -qF "\"$L/libvulkan_lvp.so\"" "$icd" 2>/dev/null
}

summary() {
	echo "$me: $(awk '$1=="mesa-vulkan-drivers"{print $1" "$2}' "$pins") (Debian sid) in ${d#"$root"/}"
}

if [ "$mode" = fetch ] && installed; then
	summary
	exit 0
fi

arch=$(dpkg --print-architecture 2>/dev/null || echo unknown)
[ "$arch" = amd64 ] || die "only amd64 hosts are supported (this is '$arch')"
for c in apt-get apt-cache dpkg-deb sha256sum; do
	command -v "$c" >/dev/null || die "$c not found: this script needs a Debian-based host"
done

# The host's Debian mirror: the first non-security URI of a deb822 stanza or
# sources.list line for this release's codename with the main component.
host_mirror() {
	local codename f u=""
	codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		u=$(awk -v cn="$codename" '
			function flush() {
				if (uri != "" && (cn == "" || suites ~ "(^| )" cn "( |$)") && comps ~ /(^| )main( |$)/ && !found) { print uri; found = 1 }
				uri = ""; suites = ""; comps = ""
			}
			/^[ \t]*$/ { flush(); next }
			tolower($1) == "uris:" { for (i = 2; i <= NF; i++) if ($i !~ /security/) { uri = $i; break } }
			tolower($1) == "suites:" { $1 = ""; suites = $0 " " }
			tolower($1) == "components:" { $1 = ""; comps = $0 " " }
			END { flush() }' "$f")
		[ -z "$u" ] || break
	done
	if [ -z "$u" ]; then
		for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
			[ -r "$f" ] || continue
			# deb [opts] URI suite comp...
			u=$(awk -v cn="$codename" '$1 == "deb" {
				i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				if ($i ~ /security/ || (cn != "" && $(i + 1) != cn)) next
				for (j = i + 2; j <= NF; j++) if ($j == "main") { print $i; exit }
			}' "$f")
			[ -z "$u" ] || break
		done
	fi
	echo "$u"
}

mirror=${DEBIAN_MIRROR:-$(host_mirror)}
[ -n "$mirror" ] || die "no Debian mirror in /etc/apt/sources.list.d/*.sources (URIs:) or /etc/apt/sources.list;
  set DEBIAN_MIRROR=<the URI of a Debian archive mirror> (one that carries sid)"

# Private apt state: our own source list, lists, cache, status and archives.
a=$d/apt
trap 'rm -rf "$a" "$d/download" "$d/root.tmp" "$d/pins.new" "$icd.tmp"' EXIT
aptopts=(
	-o "Dir::Etc::SourceList=$a/sources.list"
	-o "Dir::Etc::SourceParts=/dev/null"
	-o "Dir::State::Lists=$a/lists"
	-o "Dir::State::status=/dev/null"
	-o "Dir::Cache=$a/cache"
	-o "Dir::Cache::archives=$a/cache/archives"
	-o "APT::Architecture=amd64"
	-o "APT::Architectures=amd64"
	-o "Acquire::Languages=none"
	-o "APT::Sandbox::User=$(id -un)"
	-o "Debug::NoLocking=1"
	-q
)
updated=""
apt_update() {
	local log=$a/apt.log
	updated=1
	rm -rf "$a"
	mkdir -p "$a/lists/partial" "$a/cache/archives/partial"
	echo "deb [target=Packages] $mirror sid main" >"$a/sources.list"
	if ! apt-get "${aptopts[@]}" update >"$log" 2>&1 || grep -Eq '^(W|E):' "$log"; then
		# e.g. an unreachable mirror, or a Release we cannot verify: do not trust it.
		echo "$me: apt-get update of Debian sid from $mirror failed:" >&2
		sed 's/^/  /' "$log" >&2
		die "cannot read Debian sid's package index (set DEBIAN_MIRROR to a Debian mirror that carries sid)"
	fi
}
# sid_versions PKG: the versions sid serves now (usually one), or nothing.
sid_versions() { apt-cache "${aptopts[@]}" madison "$1" 2>/dev/null | awk -F' *[|] *' '{print $2}' | xargs; }

if [ "$mode" = repin ]; then
	echo "$me: re-pinning from Debian sid at $mirror" >&2
	apt_update
	sim=$(apt-get "${aptopts[@]}" install -s --no-install-recommends "${TOP[@]}" 2>&1) ||
		{ echo "$sim" | sed 's/^/  /' >&2; die "apt cannot resolve ${TOP[*]} in sid"; }
	new=$d/pins.new
	{
		echo "# Debian sid packages for the cooperative-matrix lavapipe, unpacked into"
		echo "# .tools/lvp-sid by scripts/fetch-lavapipe-coopmat.sh: package version sha256."
		echo "# The dependency closure of ${TOP[*]} (no Recommends), less"
		echo "# the packages lavapipe never loads. Rewritten by --repin ($(date -u +%F))."
		echo "$sim" | awk '$1=="Inst"{gsub(/[()]/, "", $3); print $2, $3}' | sort | while read -r p v; do
			[[ $p =~ $UNUSED ]] && continue
			s=$(apt-cache "${aptopts[@]}" show "$p=$v" | awk '$1=="SHA256:"{print $2; exit}')
			[ -n "$s" ] || die "no SHA256 for $p $v in sid's index"
			echo "$p $v $s"
		done
	} >"$new"
	grep -q '^mesa-vulkan-drivers ' "$new" || die "the new pins lack mesa-vulkan-drivers"
	if [ -r "$pins" ]; then
		diff <(grep -v '^#' "$pins" | cut -d' ' -f1,2) <(grep -v '^#' "$new" | cut -d' ' -f1,2) | sed -n 's/^[<>] /&/p' >&2 || true
	fi
	mv "$new" "$pins"
	echo "$me: wrote ${pins#"$root"/}; now run make test-coopmat and commit it" >&2
fi

# The pins: package version sha256.
names=() vers=() sums=()
while read -r p v s extra; do
	[[ -z $p || $p == \#* ]] && continue
	[[ -n $v && $s =~ ^[0-9a-f]{64}$ && -z $extra ]] || die "bad line in ${pins#"$root"/}: $p $v $s $extra"
	names+=("$p") vers+=("$v") sums+=("$s")
done <"$pins"
[ ${#names[@]} -gt 0 ] || die "no pins in $pins"

# debs/ keeps every pinned .deb (checked by sha256); fetch what is missing.
debs=$d/debs
mkdir -p "$debs"
deb_path() { echo "$debs/${1}_${2//:/%3a}_amd64.deb"; }
sum_ok() { [ -f "$1" ] && [ "$(sha256sum <"$1" | cut -d' ' -f1)" = "$2" ]; }
missing=()
for i in "${!names[@]}"; do
	sum_ok "$(deb_path "${names[i]}" "${vers[i]}")" "${sums[i]}" || missing+=("$i")
done
if [ ${#missing[@]} -gt 0 ]; then
	[ "$mode" = repin ] || echo "$me: fetching ${#missing[@]} of ${#names[@]} pinned packages from Debian sid at $mirror" >&2
	[ -n "$updated" ] || apt_update
	gone=() want=()
	for i in "${missing[@]}"; do
		p=${names[i]} v=${vers[i]}
		now=$(sid_versions "$p")
		if [[ " $now " == *" $v "* ]]; then
			want+=("$p=$v")
		else
			gone+=("$p $v (sid now serves ${now:-no $p at all})")
		fi
	done
	if [ ${#gone[@]} -gt 0 ]; then
		printf '  %s\n' "${gone[@]}" >&2
		die "Debian sid no longer serves ${#gone[@]} pinned package version(s), listed above.
  Re-pin to what sid serves now: scripts/fetch-lavapipe-coopmat.sh --repin
  (rewrites scripts/lavapipe-coopmat.pins), then run make test-coopmat and commit the pins."
	fi
	dl=$d/download
	rm -rf "$dl"
	mkdir -p "$dl"
	log=$a/apt.log
	if ! (cd "$dl" && apt-get "${aptopts[@]}" download "${want[@]}") >"$log" 2>&1; then
		sed 's/^/  /' "$log" >&2
		die "apt-get download from $mirror failed"
	fi
	for i in "${missing[@]}"; do
		p=${names[i]} v=${vers[i]} s=${sums[i]}
		f=$(deb_path "$p" "$v")
		got=$dl/$(basename "$f")
		[ -f "$got" ] || die "apt-get download gave no $(basename "$f")"
		sum_ok "$got" "$s" || die "$p $v from sid has sha256 $(sha256sum <"$got" | cut -d' ' -f1), pinned $s.
  A corrupt download, a mirror serving other files, or a wrong pin (--repin takes sid's index sums)"
		mv "$got" "$f"
	done
	rm -rf "$dl"
fi
rm -rf "$a"
# Drop .debs of earlier pins.
for f in "$debs"/*.deb; do
	keep=""
	for i in "${!names[@]}"; do
		[ "$f" = "$(deb_path "${names[i]}" "${vers[i]}")" ] && { keep=1; break; }
	done
	[ -n "$keep" ] || rm -f "$f"
done

# Unpack into a fresh tree and keep only lavapipe of Mesa's drivers and only
# the validation layer (the loader would find the others through
# XDG_DATA_DIRS).
t=$d/root.tmp
rm -rf "$t" "$d/root" "$d/STAMP"
for i in "${!names[@]}"; do
	dpkg-deb -x "$(deb_path "${names[i]}" "${vers[i]}")" "$t" || die "cannot unpack ${names[i]} ${vers[i]}"
done
tl=$t/usr/lib/x86_64-linux-gnu
[ -x "$tl/ld-linux-x86-64.so.2" ] || die "sid's loader is missing from the unpacked tree"
[ -f "$tl/libvulkan_lvp.so" ] && [ -f "$t/usr/share/vulkan/icd.d/lvp_icd.json" ] || die "lavapipe is missing from the unpacked mesa-vulkan-drivers"
find "$tl" -maxdepth 1 -name 'libvulkan_*.so' ! -name libvulkan_lvp.so -delete
find "$t/usr/share/vulkan/icd.d" -name '*.json' ! -name lvp_icd.json -delete
vl=$tl/libVkLayer_khronos_validation.so
[ -f "$vl" ] && [ -f "$t/usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json" ] || die "the validation layer is missing from the unpacked vulkan-validationlayers"
find "$tl" -maxdepth 1 -name 'libVkLayer_*.so' ! -name libVkLayer_khronos_validation.so -delete
find "$t/usr/share/vulkan/explicit_layer.d" -name '*.json' ! -name VkLayer_khronos_validation.json -delete
rm -rf "$t"/usr/share/vulkan/implicit_layer.d "$t"/usr/share/doc "$t"/usr/share/man "$t"/usr/share/lintian
for so in "$tl/libvulkan_lvp.so" "$tl/libvulkan.so.1" "$vl"; do
	if unresolved=$("$tl/ld-linux-x86-64.so.2" --library-path "$tl" --list "$so" 2>&1 | grep -E 'not found|=> /(usr/)?lib/'); then
		echo "$unresolved" | sed 's/^/  /' >&2
		die "$(basename "$so") needs libraries outside the pinned packages (listed above): add their packages to the pins"
	fi
done
mv "$t" "$d/root"

sed "s#\"libvulkan_lvp.so\"#\"$L/libvulkan_lvp.so\"#" "$d/root/usr/share/vulkan/icd.d/lvp_icd.json" >"$icd.tmp"
grep -qF "\"$L/libvulkan_lvp.so\"" "$icd.tmp" || die "unexpected lvp_icd.json in mesa-vulkan-drivers: $(cat "$icd.tmp")"
mv "$icd.tmp" "$icd"
stamp >"$d/STAMP"
installed || die "the unpacked tree in $d is incomplete"
summary
