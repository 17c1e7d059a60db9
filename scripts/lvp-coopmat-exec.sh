#!/bin/sh
# lvp-coopmat-exec.sh BINARY [ARGS...]: run a program built on this host on
# Debian sid's lavapipe (VK_KHR_cooperative_matrix), as unpacked into
# .tools/lvp-sid by scripts/fetch-lavapipe-coopmat.sh. For go test:
#
#   go test -exec "$PWD/scripts/lvp-coopmat-exec.sh" ./...
#
# The sid driver needs sid's glibc, so the binary runs under sid's dynamic
# loader with the tree's libraries first (this also covers its dlopen of
# libvulkan.so.1). The loader sees only the sid lavapipe ICD, and
# XDG_DATA_DIRS/XDG_CONFIG_DIRS point into the tree, so that the layers it
# finds are sid's (the validation layer the tests ask for) and not the
# system's; implicit layers are off. Child processes of BINARY run on the
# host's loader as usual.
set -eu
d=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)/.tools/lvp-sid
L=$d/root/usr/lib/x86_64-linux-gnu
if [ ! -x "$L/ld-linux-x86-64.so.2" ] || [ ! -f "$d/lvp_icd.json" ]; then
	echo "lvp-coopmat-exec: no sid lavapipe in $d: run scripts/fetch-lavapipe-coopmat.sh (or make test-coopmat)" >&2
	exit 1
fi
[ $# -ge 1 ] || { echo "usage: $0 BINARY [ARGS...]" >&2; exit 2; }
VK_DRIVER_FILES=$d/lvp_icd.json
VK_ICD_FILENAMES=$d/lvp_icd.json
XDG_DATA_DIRS=$d/root/usr/share
XDG_CONFIG_DIRS=$d/root/etc/xdg
VK_LOADER_LAYERS_DISABLE='~implicit~'
export VK_DRIVER_FILES VK_ICD_FILENAMES XDG_DATA_DIRS XDG_CONFIG_DIRS VK_LOADER_LAYERS_DISABLE
exec "$L/ld-linux-x86-64.so.2" --library-path "$L" "$@"
