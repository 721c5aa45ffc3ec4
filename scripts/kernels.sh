#!/usr/bin/env bash
# Fetches Debian's kernel images and headers into the cache and makes the
# headers usable for out-of-tree module builds.
#
#   scripts/kernels.sh fetch [VERSION...]   (default: all supported)
#   scripts/kernels.sh dir VERSION           prints the unpacked root
#
# Layout of $PCIEM_CACHE/kernels/VERSION/ once fetched:
#   root/        the .debs unpacked with dpkg -x
#   release      the kernel release (uname -r) of the image
#   vmlinuz      the image
#   build        symlink to the headers' build directory
#   .ready       written last: the fetch completed
set -euo pipefail
export PCIEM_LOG_TAG="kernels"
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

kdir() { echo "$PCIEM_CACHE/kernels/$1"; }

check_version() {
	[ -n "${PCIEM_KERNEL_SUITE[$1]:-}" ] ||
		die "unknown kernel '$1' (supported: $PCIEM_KERNELS)"
}

fetch_one() {
	local ver=$1 suite dir
	check_version "$ver"
	dir=$(kdir "$ver")
	[ -f "$dir/.ready" ] && return 0
	suite=${PCIEM_KERNEL_SUITE[$ver]}
	pciem_apt_setup

	# The metapackage names the current ABI; resolve it rather than pin a
	# version the mirror will drop.
	local image headers common kbuild release
	image=$(pciem_apt_cache show "linux-image-amd64/$suite" | sed -n 's/^Depends: \(linux-image-[^ ]*\).*/\1/p' | head -n1)
	[ -n "$image" ] || die "cannot resolve linux-image-amd64 in $suite"
	release=${image#linux-image-}
	headers=linux-headers-$release
	common=$(pciem_apt_cache show "$headers" | sed -n 's/^Depends: .*\(linux-headers-[^ ,]*-common\).*/\1/p' | head -n1)
	kbuild=$(pciem_apt_cache show "$headers" | grep -oE 'linux-kbuild-[^ ,]+' | head -n1)
	if [ -z "$common" ] || [ -z "$kbuild" ]; then
		die "cannot resolve the header packages of $headers"
	fi
	log "fetching $ver: $image, $headers, $common, $kbuild"

	rm -rf "$dir"
	mkdir -p "$dir/debs" "$dir/root"
	(cd "$dir/debs" && pciem_with_progress "download $ver" \
		pciem_apt_get -q download "$image" "$headers" "$common" "$kbuild" >"$dir/download.log" 2>&1) ||
		{ tail -n 20 "$dir/download.log" >&2; die "download of kernel $ver failed"; }
	local deb
	for deb in "$dir"/debs/*.deb; do
		log "unpacking $(basename "$deb")"
		dpkg -x "$deb" "$dir/root"
	done

	# The arch headers' Makefile includes the common tree by absolute path.
	local hdr=$dir/root/usr/src/$headers
	sed -i "s|/usr/src/$common|$dir/root/usr/src/$common|g" "$hdr/Makefile"
	# kbuild symlinks point at absolute /usr/lib paths on a real install.
	local l t
	while IFS= read -r l; do
		t=$(readlink "$l")
		case $t in /*) ln -sfn "$dir/root$t" "$l" ;; esac
	done < <(find "$dir/root/usr/src" "$dir/root/lib/modules" -type l)

	# A real install runs depmod; the VM's modprobe and the initramfs need it.
	depmod -b "$dir/root" "$release" || die "depmod failed for $release"

	ln -sfn "$hdr" "$dir/build"
	ln -sfn "$dir/root/boot/vmlinuz-$release" "$dir/vmlinuz"
	echo "$release" > "$dir/release"
	rm -rf "$dir/debs"
	touch "$dir/.ready"
	log "kernel $ver ready: $release"
}

cmd=${1:-}
shift || true
case $cmd in
fetch)
	# shellcheck disable=SC2086 # a list of words
	[ $# -gt 0 ] || set -- $PCIEM_KERNELS
	for v in "$@"; do fetch_one "$v"; done ;;
dir)
	[ $# -eq 1 ] || die "usage: $0 dir VERSION"
	check_version "$1"
	[ -f "$(kdir "$1")/.ready" ] || die "kernel $1 is not in the cache ($(kdir "$1")); run 'make deps'"
	kdir "$1" ;;
*)
	die "usage: $0 fetch [VERSION...] | dir VERSION" ;;
esac
