#!/usr/bin/env bash
# make demo: builds what is missing, boots the VM that plays the host, and
# runs DOOM (Debian's chocolate-doom with freedoom, unmodified) through the
# whole chain: protopciem.ko -> pciem.ko -> gateway -> QEMU card model.
# The card's display is QEMU's VNC server, forwarded to 127.0.0.1; its
# screendumps land in the output folder. The gateway's dashboard (live
# display, event trace, counters) is forwarded to 127.0.0.1 too; its URL,
# with the random token it requires, is printed. Ctrl-C stops everything.
#
# HOST=1 runs the chain on this machine's own kernel instead of the VM: it
# needs root and the running kernel's headers, loads pciem.ko and
# protopciem.ko into this kernel and unloads them at the end.
#
#   make demo [HOST=1] [DEMO_OUT=DIR] [DEMO_VNC_PORT=5900] [DEMO_DASHBOARD_PORT=8080]
#             [DEMO_SECONDS=3600] [DEMO_LOOPS=0]
set -euo pipefail
export PCIEM_LOG_TAG="demo"
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
cd "$PCIEM_TOP"

started=$(date +%s%3N)
host=${HOST:-0}
out=${DEMO_OUT:-$PCIEM_TOP/demo-out}
vnc=${DEMO_VNC_PORT:-5900}
dash=${DEMO_DASHBOARD_PORT:-8080}
seconds=${DEMO_SECONDS:-3600}
[[ $host =~ ^[01]$ ]] || die "HOST must be 0 (the VM, default) or 1 (this machine's kernel), not '$host'"
# port_ok VALUE LOWEST
port_ok() { [[ $1 =~ ^[0-9]{1,5}$ ]] && (($1 >= $2 && $1 <= 65535)); }
port_ok "$vnc" 5900 || die "DEMO_VNC_PORT must be a port number from 5900 to 65535 (VNC displays start at 5900), not '$vnc'"
port_ok "$dash" 1 || die "DEMO_DASHBOARD_PORT must be a port number from 1 to 65535, not '$dash'"
[ "$dash" != "$vnc" ] || die "DEMO_DASHBOARD_PORT and DEMO_VNC_PORT are both $vnc"
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "DEMO_SECONDS must be a number of seconds, not '$seconds'"

kver=6.12
if [ "$host" = 1 ]; then
	# Checked before anything is built or installed: this loads modules
	# into the kernel of the machine the user sits at.
	[ "$(id -u)" = 0 ] || die "HOST=1 loads pciem.ko into this machine's kernel: run it as root"
	release=$(uname -r)
	modules=${PCIEM_HOST_MODULES:-/lib/modules}/$release
	[ -d "$modules/build" ] ||
		die "HOST=1 builds pciem.ko against the running kernel's headers, and $modules/build is missing (Debian: apt install linux-headers-$release)"
	[ ! -e /sys/module/pciem ] || die "pciem.ko is already loaded in this kernel; unload it first (rmmod protopciem pciem)"
	case $release in
	6.1.* | 6.12.*) ;;
	*) log "warning: kernel $release; pciem.ko is tested on Debian's 6.1 and 6.12" ;;
	esac
	kver=host
fi
mkdir -p "$out"

log "1/5 dependencies (Debian packages, npm packages, kernels)"
scripts/deps.sh
log "2/5 kernel modules"
if [ "$host" = 1 ]; then
	make --no-print-directory -C kernel KVER=host KDIR="$modules" >/dev/null
else
	make --no-print-directory kernel >/dev/null
fi
log "3/5 QEMU with the card model"
qemu=$(qemu-plugin/build.sh)
log "4/5 gateway addon and the DOOM frame hook"
make --no-print-directory addon doom >/dev/null
kdir=kernel/build/$kver
[ -f "$kdir/pciem.ko" ] || die "$kdir/pciem.ko is missing after the build"

# The token the dashboard requires: made here so the URL can be printed now.
token=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
url="http://127.0.0.1:$dash/?token=$token"
if [ "$host" = 1 ]; then
	log "5/5 loading pciem.ko into this kernel ($release) and starting the chain"
else
	log "5/5 booting the host VM (Debian 6.12 under TCG); DOOM starts in about a minute"
fi
log "  the card's display (QEMU VNC): 127.0.0.1:$vnc   e.g. vncviewer 127.0.0.1::$vnc"
log "  dashboard (live display, event trace, counters): $url"
log "  screendumps: $out/doom-*.ppm (paths printed as they are written)"
log "  Ctrl-C stops everything"
demo_env=(QEMU="$qemu" PCIEM_KO="$kdir/pciem.ko" PROTOPCIEM_KO="$kdir/protopciem.ko"
	DOOM_RUN="$PCIEM_TOP/guests/doom/run-doom" OUT="$out" LOOPS="${DEMO_LOOPS:-0}"
	DASHBOARD_TOKEN="$token" DASHBOARD_URL="$url" DEMO_T0="$started")
rc=0
if [ "$host" = 1 ]; then
	# The chain on this kernel: the dashboard and VNC on 127.0.0.1 only;
	# demo.ts unloads the modules it loaded when it stops.
	timeout --foreground "$seconds" env "${demo_env[@]}" DASHBOARD_HOST=127.0.0.1 DASHBOARD_PORT="$dash" \
		VNC_DISPLAY="127.0.0.1:$((vnc - 5900))" UNLOAD_MODULES=1 node --import tsx guests/demo/demo.ts || rc=$?
else
	guests/vm/run --timeout "$seconds" --memory 3072 --share "$out" --forward "$vnc:5900" --forward "$dash:8080" -- \
		env "${demo_env[@]}" node --import tsx guests/demo/demo.ts || rc=$?
fi
case $rc in
0) log "done: $(find "$out" -name 'doom-*.ppm' | wc -l) screendumps in $out" ;;
124) log "the demo ran its $seconds s (DEMO_SECONDS) and stopped; screendumps in $out"; rc=0 ;;
130) log "stopped (Ctrl-C); screendumps in $out" ;;
*) log "the demo failed (exit $rc); see the messages above" ;;
esac
exit "$rc"
