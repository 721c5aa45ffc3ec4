#!/usr/bin/env bash
# make demo: builds what is missing, boots the VM that plays the host, and
# runs DOOM (Debian's chocolate-doom with freedoom, unmodified) through the
# whole chain: protopciem.ko -> pciem.ko -> gateway -> QEMU card model.
# The card's display is QEMU's VNC server, forwarded to 127.0.0.1; its
# screendumps land in the output folder. Ctrl-C stops everything.
#
#   make demo [DEMO_OUT=DIR] [DEMO_VNC_PORT=5900] [DEMO_SECONDS=3600] [DEMO_LOOPS=0]
set -euo pipefail
export PCIEM_LOG_TAG="demo"
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
cd "$PCIEM_TOP"

if [ "${HOST:-0}" = 1 ]; then
	die "HOST=1 (loading pciem.ko into this machine's own kernel) is not supported yet; the demo runs in the VM"
fi
started=$(date +%s%3N)
out=${DEMO_OUT:-$PCIEM_TOP/demo-out}
vnc=${DEMO_VNC_PORT:-5900}
seconds=${DEMO_SECONDS:-3600}
[[ $vnc =~ ^[0-9]+$ ]] || die "DEMO_VNC_PORT must be a port number, not '$vnc'"
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "DEMO_SECONDS must be a number of seconds, not '$seconds'"
mkdir -p "$out"

log "1/5 dependencies (Debian packages, npm packages, kernels)"
scripts/deps.sh
log "2/5 kernel modules"
make --no-print-directory kernel >/dev/null
log "3/5 QEMU with the card model"
qemu=$(qemu-plugin/build.sh)
log "4/5 gateway addon and the DOOM frame hook"
make --no-print-directory addon doom >/dev/null
kdir=kernel/build/6.12
[ -f "$kdir/pciem.ko" ] || die "kernel/build/6.12/pciem.ko is missing after the build"

log "5/5 booting the host VM (Debian 6.12 under TCG); DOOM starts in about a minute"
log "  the card's display (QEMU VNC): 127.0.0.1:$vnc   e.g. vncviewer 127.0.0.1::$vnc"
log "  screendumps: $out/doom-*.ppm (paths printed as they are written)"
log "  dashboard: not built yet (the gateway control-plane issue)"
log "  Ctrl-C stops everything"
rc=0
guests/vm/run --timeout "$seconds" --memory 3072 --share "$out" --forward "$vnc:5900" -- \
	env QEMU="$qemu" PCIEM_KO="$kdir/pciem.ko" PROTOPCIEM_KO="$kdir/protopciem.ko" \
	DOOM_RUN="$PCIEM_TOP/guests/doom/run-doom" OUT="$out" LOOPS="${DEMO_LOOPS:-0}" \
	DEMO_T0="$started" node --import tsx guests/demo/demo.ts || rc=$?
case $rc in
0) log "done: $(find "$out" -name 'doom-*.ppm' | wc -l) screendumps in $out" ;;
124) log "the demo ran its $seconds s (DEMO_SECONDS) and stopped; screendumps in $out"; rc=0 ;;
130) log "stopped (Ctrl-C); screendumps in $out" ;;
*) log "the demo failed (exit $rc); see the messages above" ;;
esac
exit "$rc"
