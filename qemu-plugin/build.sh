#!/usr/bin/env bash
# Builds qemu-system-x86_64 from Debian's QEMU 10.0.x source with this
# project's device models in it, and prints the binary's absolute path as
# the only line on stdout (everything else goes to stderr).
#
# Layout in $PCIEM_CACHE/qemu/ (shared by every clone on the machine):
#   dl/                  the orig tarball and the .debs, as downloaded
#   pytools/             meson and pycotap from bookworm-backports, unpacked
#   src-VERSION/         the unpacked tree, plus our hw/pciem/ and hooks
#   build-VERSION/       the configured build tree (kept between runs)
#   current              the QEMU version in use (re-resolved by --update)
#   logs/                configure.log, build.log
#   .lock                serialises concurrent builds
# Every step writes its marker (.ready, .config-hash) last.
set -euo pipefail
export PCIEM_LOG_TAG="qemu"
# shellcheck source=../scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"

QEMU_SUITE=bookworm-backports
QEMU_SERIES=10.0
MESON_MIN=1.5
PY=/usr/bin/python3
TARGET=x86_64-softmmu
DEVICES_NAME=pciem

HERE=$PCIEM_TOP/qemu-plugin
# C sources of proto/ copied next to ours: the card's constants, the wire
# protocol's codec, and the rings with their records (for the bridge).
GENERATED_FILES=(
	"$PCIEM_TOP/proto/generated/protopciem_regs.h"
	"$PCIEM_TOP/proto/generated/wire.h"
	"$PCIEM_TOP/proto/generated/wire.c"
	"$PCIEM_TOP/proto/ring/pciem_ring.h"
	"$PCIEM_TOP/proto/ring/pciem_ring_records.h"
)
QDIR=$PCIEM_CACHE/qemu
PYTOOLS=$QDIR/pytools
PYTOOLS_SITE=$PYTOOLS/usr/lib/python3/dist-packages
LOGS=$QDIR/logs

usage() {
	cat <<EOF
usage: $0 [options]

Builds QEMU $QEMU_SERIES.x ($QEMU_SUITE source) for $TARGET with the device
models in qemu-plugin/, caching everything in $QDIR.
Prints the absolute path of qemu-system-x86_64 on stdout.

  -j, --jobs N     parallel compile jobs (default: \$PCIEM_JOBS or 2)
  --update         re-resolve the QEMU version from the archive
  --reconfigure    run QEMU's configure even if nothing changed
  -h, --help       this text
EOF
}

jobs=${PCIEM_JOBS:-2}
update=no
force_configure=no
while [ $# -gt 0 ]; do
	case $1 in
	-j | --jobs) [ $# -ge 2 ] || die "$1 needs a number"; jobs=$2; shift ;;
	-j*) jobs=${1#-j} ;;
	--update) update=yes ;;
	--reconfigure) force_configure=yes ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown option '$1' (see --help)" ;;
	esac
	shift
done
[[ $jobs =~ ^[1-9][0-9]*$ ]] || die "--jobs wants a positive number, not '$jobs'"

check_host() {
	local t missing=()
	[ -x "$PY" ] || die "$PY not found; install python3 (see qemu-plugin/packages.debian, 'make deps')"
	for t in gcc ninja pkg-config bzip2 xz dpkg flock cmp sha256sum; do
		command -v "$t" >/dev/null || missing+=("$t")
	done
	[ ${#missing[@]} -eq 0 ] ||
		die "missing tools: ${missing[*]}; install qemu-plugin/packages.debian ('make deps')"
	for t in glib-2.0 pixman-1 zlib json-c cmocka msgpack; do
		pkg-config --exists "$t" || missing+=("$t (pkg-config)")
	done
	[ -f /usr/include/libfdt.h ] || missing+=("libfdt.h")
	[ ${#missing[@]} -eq 0 ] ||
		die "missing development files: ${missing[*]}; install qemu-plugin/packages.debian ('make deps')"
}

# Downloads one file named by apt's --print-uris line, verifying its hash.
download_verified() {
	local uri=$1 dest=$2 hash=$3
	[ -f "$dest" ] && return 0
	log "downloading $(basename "$dest")"
	/usr/lib/apt/apt-helper download-file "$uri" "$dest.part" "$hash" >"$LOGS/download.log" 2>&1 ||
		{ tail -n 20 "$LOGS/download.log" >&2; die "download of $uri failed"; }
	mv "$dest.part" "$dest"
}

# Resolves the QEMU version in $QEMU_SUITE and fetches its orig tarball.
# Only the orig tarball is needed (Debian's patches are not applied), and
# the mirror does not always keep the .dsc of superseded backports, so the
# tarball is fetched on its own with the hash from the Sources index.
resolve_qemu() {
	pciem_apt_setup
	local line uri name hash upver empty
	# In an empty folder, so apt lists the tarball even if we have it.
	empty=$(mktemp -d)
	line=$(cd "$empty" && pciem_apt_get -q source --download-only --print-uris "qemu/$QEMU_SUITE" 2>"$LOGS/resolve.log" |
		grep -E "^'[^']+' qemu_[^ ]+\.orig\.tar\.[a-z0-9]+ " | head -n1) || true
	rmdir "$empty"
	[ -n "$line" ] || { cat "$LOGS/resolve.log" >&2; die "cannot find QEMU's orig tarball in $QEMU_SUITE"; }
	uri=$(echo "$line" | cut -d"'" -f2)
	name=$(echo "$line" | awk '{print $2}')
	hash=$(echo "$line" | awk '{print $4}')
	upver=${name#qemu_}
	upver=${upver%%.orig.tar.*}
	upver=${upver%%+*}
	case $upver in
	"$QEMU_SERIES".*) ;;
	*) die "$QEMU_SUITE has QEMU $upver, this recipe is written for $QEMU_SERIES.x" ;;
	esac
	download_verified "$uri" "$QDIR/dl/$name" "$hash"
	printf '%s %s\n' "$upver" "$name" >"$QDIR/current"
}

# The placeholders Debian's repacked tarball needs: it drops the edk2
# firmware images, which pc-bios/meson.build decompresses for x86 targets
# whenever bzip2 exists. Empty ones are enough: we never boot firmware.
stub_stripped_files() {
	local src=$1 fd
	for fd in $(grep -oE "'edk2-[A-Za-z0-9_-]+\.fd'" "$src/pc-bios/meson.build" | tr -d "'"); do
		[ -f "$src/pc-bios/$fd.bz2" ] || bzip2 -c </dev/null >"$src/pc-bios/$fd.bz2"
	done
}

unpack_qemu() {
	local upver=$1 tarball=$2 src=$QDIR/src-$1
	[ -f "$src/.ready" ] && return 0
	log "unpacking $tarball"
	rm -rf "$src" "$src.tmp"
	mkdir -p "$src.tmp"
	tar -xf "$QDIR/dl/$tarball" -C "$src.tmp" --strip-components=1 ||
		die "cannot unpack $QDIR/dl/$tarball"
	[ "$(cat "$src.tmp/VERSION")" = "$upver" ] ||
		die "$tarball holds QEMU $(cat "$src.tmp/VERSION"), expected $upver"
	stub_stripped_files "$src.tmp"
	mv "$src.tmp" "$src"
	touch "$src/.ready"
}

# meson >= $MESON_MIN and pycotap (QEMU's configure wants both) from
# bookworm-backports. Both are pure Python: unpacked, never installed.
fetch_pytools() {
	[ -f "$PYTOOLS/.ready" ] && return 0
	pciem_apt_setup
	log "fetching meson and python3-pycotap from $QEMU_SUITE"
	rm -rf "$PYTOOLS" "$PYTOOLS.tmp" "$QDIR/dl/debs"
	mkdir -p "$QDIR/dl/debs" "$PYTOOLS.tmp"
	(cd "$QDIR/dl/debs" &&
		pciem_apt_get -q download "meson/$QEMU_SUITE" "python3-pycotap/$QEMU_SUITE") >"$LOGS/download.log" 2>&1 ||
		{ tail -n 20 "$LOGS/download.log" >&2; die "download of meson/python3-pycotap from $QEMU_SUITE failed"; }
	local deb
	for deb in "$QDIR"/dl/debs/*.deb; do
		dpkg -x "$deb" "$PYTOOLS.tmp"
	done
	rm -rf "$QDIR/dl/debs"
	local ver
	ver=$(PYTHONPATH=$PYTOOLS.tmp/usr/lib/python3/dist-packages "$PY" -c \
		'import mesonbuild.coredata as c; print(c.version)') ||
		die "the unpacked meson does not run with $PY"
	"$PY" -c 'import sys; a, b = (tuple(int(x) for x in v.split(".")[:2]) for v in sys.argv[1:]); sys.exit(a < b)' \
		"$ver" "$MESON_MIN" || die "meson $ver from $QEMU_SUITE is older than $MESON_MIN"
	mv "$PYTOOLS.tmp" "$PYTOOLS"
	echo "$ver" >"$PYTOOLS/.ready"
	log "meson $ver ready"
}

# Copies SRC to DST only when the content differs, so an unchanged file
# keeps its timestamp and ninja rebuilds nothing.
sync_file() {
	local src=$1 dst=$2
	cmp -s "$src" "$dst" 2>/dev/null && return 0
	mkdir -p "$(dirname "$dst")"
	cp "$src" "$dst.tmp"
	mv "$dst.tmp" "$dst"
	log "updated ${dst#"$QDIR"/}"
}

# Same as sync_file, for generated content.
sync_text() {
	local text=$1 dst=$2
	[ -f "$dst" ] && [ "$(cat "$dst")" = "$text" ] && return 0
	printf '%s\n' "$text" >"$dst"
	log "updated ${dst#"$QDIR"/}"
}

# Adds LINE to FILE once. With ANCHOR, LINE goes right before the (unique)
# line ANCHOR; without, at the end.
hook_line() {
	local file=$1 line=$2 anchor=${3:-}
	grep -qxF "$line" "$file" && return 0
	if [ -z "$anchor" ]; then
		printf '%s\n' "$line" >>"$file"
	else
		[ "$(grep -cxF "$anchor" "$file")" = 1 ] ||
			die "cannot hook into ${file#"$QDIR"/}: no unique line '$anchor'"
		awk -v a="$anchor" -v l="$line" '$0 == a { print l } { print }' "$file" >"$file.tmp"
		mv "$file.tmp" "$file"
	fi
	log "hooked hw/pciem into ${file#"$QDIR"/}"
}

# Puts the lines of BLOCK into FILE right after the (unique) line ANCHOR,
# between two marker comments, replacing what an earlier run put there.
# FILE is rewritten only when that changes it.
splice_block() {
	local file=$1 anchor=$2 block=$3 begin end="# <<< pciem-gateway"
	begin="# >>> pciem-gateway: ${block##*/}"
	[ "$(grep -cxF "$anchor" "$file")" = 1 ] ||
		die "cannot splice into ${file#"$QDIR"/}: no unique line '$anchor'"
	awk -v a="$anchor" -v b="$begin" -v e="$end" -v f="$block" '
		$0 == b { skip = 1; next }
		skip && $0 == e { skip = 0; next }
		skip { next }
		{ print }
		$0 == a { print b; while ((getline l < f) > 0) print l; print e }
	' "$file" >"$file.tmp"
	if cmp -s "$file" "$file.tmp"; then
		rm -f "$file.tmp"
	else
		mv "$file.tmp" "$file"
		log "spliced $(basename "$block") into ${file#"$QDIR"/}"
	fi
}

# Puts our sources (and the generated files they use) into the tree
# as hw/pciem/ and wires them into QEMU's meson, Kconfig and trace machinery.
install_sources() {
	local src=$1 dir=$1/hw/pciem f
	local -A want=()
	sync_file "$HERE/meson.build" "$dir/meson.build"; want[meson.build]=1
	sync_file "$HERE/Kconfig" "$dir/Kconfig"; want[Kconfig]=1
	for f in "$HERE"/hw/*; do
		[ -f "$f" ] || continue
		sync_file "$f" "$dir/$(basename "$f")"
		want[$(basename "$f")]=1
	done
	# From proto/: generated from protopciem.json and wire.json, and the rings.
	for f in "${GENERATED_FILES[@]}"; do
		[ -f "$f" ] || die "missing $f (run: make proto)"
		sync_file "$f" "$dir/$(basename "$f")"
		want[$(basename "$f")]=1
	done
	sync_text '#include "trace/trace-hw_pciem.h"' "$dir/trace.h"; want[trace.h]=1
	for f in "$dir"/*; do
		[ -n "${want[$(basename "$f")]:-}" ] && continue
		rm -f "$f"
		log "removed stale ${f#"$QDIR"/}"
	done
	sync_file "$HERE/devices.mak" "$src/configs/devices/$TARGET/$DEVICES_NAME.mak"

	hook_line "$src/hw/meson.build" "subdir('pciem')"
	hook_line "$src/hw/Kconfig" "source pciem/Kconfig"
	# The trace headers are generated before hw/ is visited.
	hook_line "$src/meson.build" "trace_events_subdirs += [ 'hw/pciem' ]" "subdir('trace')"
	# -object and object-add accept only the types of QAPI's ObjectType.
	splice_block "$src/qapi/qom.json" "  'data': { 'socket': 'SocketAddress', 'device': 'str' } }" \
		"$HERE/qapi/pciem-bridge.json"
	hook_line "$src/qapi/qom.json" "    'pciem-bridge'," \
		"    { 'name': 'x-remote-object', 'features': [ 'unstable' ] },"
	hook_line "$src/qapi/qom.json" "      'pciem-bridge':               'PciemBridgeProperties'," \
		"      'x-remote-object':            'RemoteObjectProperties',"
}

configure_flags() {
	local flags=(
		--python="$PY"
		--target-list="$TARGET"
		# Only what is enabled below, and only the devices in devices.mak.
		--without-default-features
		--without-default-devices
		--with-devices-x86_64="$DEVICES_NAME"
		# Our device code must build warning-free (QEMU itself does on gcc 12).
		--enable-werror
		# Offline: every subproject needed is in the tarball.
		--disable-download
		--disable-install-blobs
		--disable-docs
		--disable-tools
		--disable-guest-agent
		--disable-user
		--enable-fdt=system
		# -machine x-remote: MULTIPROCESS depends on KVM being built in.
		--enable-kvm
		--enable-multiprocess
		--enable-vfio-user-server
		--enable-pixman
		--enable-vnc
	)
	printf '%s\n' "${flags[@]}"
}

# Everything a configure run depends on besides QEMU's own tree.
config_hash() {
	{
		echo "qemu $1"
		echo "meson $(cat "$PYTOOLS/.ready")"
		configure_flags
		cat "$HERE/devices.mak" "$HERE/meson.build" "$HERE/Kconfig"
	} | sha256sum | cut -d' ' -f1
}

configure_qemu() {
	local src=$1 build=$2 hash=$3
	[ "$force_configure" = no ] && [ -f "$build/build.ninja" ] &&
		[ "$(cat "$build/.config-hash" 2>/dev/null)" = "$hash" ] && return 0
	log "configuring QEMU in $build (log: $LOGS/configure.log)"
	mkdir -p "$build"
	rm -f "$build/.config-hash"
	local flags=()
	mapfile -t flags < <(configure_flags)
	run_configure() { cd "$build" && "$src/configure" "${flags[@]}" >"$LOGS/configure.log" 2>&1; }
	pciem_with_progress configure run_configure ||
		{ tail -n 40 "$LOGS/configure.log" >&2; die "QEMU's configure failed; see $LOGS/configure.log"; }
	# The venv configure made must find the unpacked meson without
	# PYTHONPATH too, so that a plain 'ninja -C $build' can regenerate.
	local site
	site=$(echo "$build"/pyvenv/lib/python3*/site-packages)
	[ -d "$site" ] || die "configure left no pyvenv site-packages in $build"
	echo "$PYTOOLS_SITE" >"$site/pciem-pytools.pth"
	echo "$hash" >"$build/.config-hash"
}

# ninja with its output in a log and its [N/M] progress every 15 s.
build_qemu() {
	local build=$1 log=$LOGS/build.log start=$SECONDS next=$((SECONDS + 15)) pid
	ninja -C "$build" -j "$jobs" qemu-system-x86_64 >"$log" 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 0.2
		if [ "$SECONDS" -ge "$next" ] && kill -0 "$pid" 2>/dev/null; then
			log "building: $(grep -oE '^\[[0-9]+/[0-9]+\]' "$log" | tail -n1) ($((SECONDS - start)) s)"
			next=$((SECONDS + 15))
		fi
	done
	if ! wait "$pid"; then
		if grep -q '^FAILED:' "$log"; then
			grep -A 30 '^FAILED:' "$log" | head -n 60 >&2
		else
			tail -n 40 "$log" >&2
		fi
		die "QEMU build failed after $((SECONDS - start)) s; full log: $log"
	fi
	# qemu-version.h is regenerated on every run; only compiles and links
	# mean something changed.
	local steps
	steps=$(grep -cE '^\[[0-9]+/[0-9]+\] (Compiling|Linking)' "$log" || true)
	if [ "$steps" -eq 0 ]; then
		log "QEMU is up to date"
	else
		log "compiled/linked $steps files in $((SECONDS - start)) s"
	fi
}

main() {
	check_host
	mkdir -p "$QDIR/dl" "$LOGS"
	exec 9>"$QDIR/.lock"
	if ! flock -n 9; then
		log "another QEMU build is running on this cache; waiting"
		flock 9
	fi

	if [ "$update" = yes ] || [ ! -s "$QDIR/current" ]; then
		resolve_qemu
	fi
	local upver tarball
	read -r upver tarball <"$QDIR/current"
	[ -f "$QDIR/dl/$tarball" ] || resolve_qemu
	read -r upver tarball <"$QDIR/current"

	unpack_qemu "$upver" "$tarball"
	fetch_pytools
	export PYTHONPATH=$PYTOOLS_SITE${PYTHONPATH:+:$PYTHONPATH}

	local src=$QDIR/src-$upver build=$QDIR/build-$upver
	install_sources "$src"
	configure_qemu "$src" "$build" "$(config_hash "$upver")"
	build_qemu "$build"

	local bin=$build/qemu-system-x86_64
	[ -x "$bin" ] || die "the build finished but $bin is missing"
	echo "$bin"
}

main
