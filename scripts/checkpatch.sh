#!/usr/bin/env bash
# Runs the kernel's checkpatch.pl over our kernel sources and fails on any
# ERROR. checkpatch comes from Debian's linux-source-6.1 package, fetched
# once into the cache (only the script and its data files are kept).
#
#   scripts/checkpatch.sh [FILE...]   (default: kernel/*.[ch] kernel/include/uapi/linux/*.h kernel/tests/*.c)
set -euo pipefail
export PCIEM_LOG_TAG="checkpatch"
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

dir=$PCIEM_CACHE/checkpatch
if [ ! -f "$dir/.ready" ]; then
	pciem_apt_setup
	rm -rf "$dir"
	mkdir -p "$dir/deb"
	log "fetching linux-source-6.1 from bookworm for checkpatch.pl (140 MB, once)"
	(cd "$dir/deb" && pciem_with_progress "download" pciem_apt_get -q download linux-source-6.1 >"$dir/download.log" 2>&1) ||
		{ tail -n 20 "$dir/download.log" >&2; die "download of linux-source-6.1 failed"; }
	dpkg -x "$dir"/deb/linux-source-6.1_*.deb "$dir/deb/root"
	tarball=$(find "$dir/deb/root/usr/src" -name 'linux-source-6.1.tar.xz' | head -n1)
	[ -n "$tarball" ] || die "no kernel source tarball in linux-source-6.1"
	log "extracting checkpatch.pl and its data files"
	pciem_with_progress "extract" tar -xJf "$tarball" -C "$dir" --strip-components=1 --wildcards \
		'*/scripts/checkpatch.pl' '*/scripts/spelling.txt' '*/scripts/const_structs.checkpatch'
	rm -rf "$dir/deb"
	touch "$dir/.ready"
fi

cd "$PCIEM_TOP"
default_files=0
if [ $# -eq 0 ]; then
	default_files=1
	set -- kernel/*.[ch] kernel/include/uapi/linux/*.h kernel/tests/*.c
fi
# --no-tree: we are not in a kernel tree; the rest are checks that do not
# apply to an out-of-tree module (no MAINTAINERS, no SPDX tree lookup).
out=$(perl "$dir/scripts/checkpatch.pl" --no-tree --terse --show-types -f \
	--ignore FILE_PATH_CHANGES,SPDX_LICENSE_TAG "$@" 2>&1 || true)
# Our QEMU device sources get QEMU's own checkpatch (from the cached QEMU
# source tree, when it has been fetched) on a default run.
if [ "$default_files" = 1 ]; then
	qcp=$(find "$PCIEM_CACHE/qemu" -maxdepth 3 -path '*/src-*/scripts/checkpatch.pl' 2>/dev/null | head -n1)
	if [ -n "$qcp" ]; then
		for f in qemu-plugin/hw/*.[ch]; do
			out+=$'\n'$(perl "$qcp" --no-tree --terse -f "$f" 2>&1 || true)
		done
		set -- "$@" qemu-plugin/hw/*.[ch]
	else
		log "QEMU source not fetched yet: qemu-plugin/ checked at the next run after 'make qemu'"
	fi
fi
errors=$(grep -c ': ERROR:' <<<"$out" || true)
warnings=$(grep -c ': WARNING:' <<<"$out" || true)
grep -E ': (ERROR|WARNING):' <<<"$out" || true
echo "checkpatch: $# files, $errors errors, $warnings warnings"
[ "$errors" -eq 0 ]
