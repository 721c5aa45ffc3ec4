#!/usr/bin/env bash
# Smoke test of the project's QEMU build, against the real binary:
#   1. -machine x-remote with -device protopciem starts; over QMP,
#      query-pci shows the card (1f0c:0001, BAR0 64 KiB, BAR2 1 MiB) and
#      query-version reports 10.0.x;
#   2. -machine none starts and answers QMP;
#   3. VNC (on a UNIX socket) starts, query-vnc reports it, and it greets
#      with an RFB banner;
#   4. the card's registers answer through x-remote's vfio-user server:
#      ID and VERSION read back, they ignore writes, an undefined offset
#      reads 0 and is logged (LOG_GUEST_ERROR and the trace points), an
#      ADD command completes, and BAR2 keeps what is written to it.
# Every QEMU started is killed on exit, whatever happens.
#
#   qemu-plugin/tests/smoke.sh [QEMU_BINARY]
# Without an argument the binary comes from qemu-plugin/build.sh (a no-op
# in seconds when it is up to date). Exits 0 only if every check passes.
set -euo pipefail
export PCIEM_LOG_TAG="qemu-smoke"
# shellcheck source=../../scripts/lib.sh
. "$(dirname "$0")/../../scripts/lib.sh"

PY=/usr/bin/python3
START_TIMEOUT=${PCIEM_SMOKE_START_TIMEOUT:-20}

case ${1:-} in
-h | --help)
	sed -n '2,17s/^# \{0,1\}//p' "$0"
	exit 0 ;;
esac

QEMU=${1:-}
if [ -z "$QEMU" ]; then
	QEMU=$("$PCIEM_TOP/qemu-plugin/build.sh") || die "qemu-plugin/build.sh failed"
fi
[ -x "$QEMU" ] || die "not an executable: $QEMU"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pciem-qemu-smoke.XXXXXX")
declare -A PIDS=()

cleanup() {
	local name pid i
	for name in "${!PIDS[@]}"; do
		kill "${PIDS[$name]}" 2>/dev/null || true
	done
	for name in "${!PIDS[@]}"; do
		pid=${PIDS[$name]}
		# Give each QEMU a moment to exit on SIGTERM, then insist.
		for i in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	PIDS=()
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# fail MESSAGE [NAME]: with NAME, also says whether that QEMU is still
# running and shows the end of its output.
fail() {
	local msg=$1 name=${2:-}
	if [ -n "$name" ] && ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
		msg="$msg (QEMU '$name' has exited)"
	fi
	printf '[%s] FAIL: %s\n' "$PCIEM_LOG_TAG" "$msg" >&2
	if [ -n "$name" ] && [ -s "$TMP/$name.log" ]; then
		echo "--- output of QEMU '$name':" >&2
		tail -n 20 "$TMP/$name.log" >&2
	fi
	exit 1
}

# start_qemu NAME ARGS...: starts QEMU with a QMP socket at $TMP/NAME.qmp
# and waits until the socket is there.
start_qemu() {
	local name=$1 pid i
	shift
	"$QEMU" -nodefaults -display none \
		-qmp "unix:$TMP/$name.qmp,server=on,wait=off" "$@" \
		>"$TMP/$name.log" 2>&1 </dev/null &
	pid=$!
	PIDS[$name]=$pid
	for ((i = 0; i < START_TIMEOUT * 10; i++)); do
		[ -S "$TMP/$name.qmp" ] && return 0
		kill -0 "$pid" 2>/dev/null || fail "QEMU '$name' exited during startup ($*)" "$name"
		sleep 0.1
	done
	fail "QEMU '$name' did not open its QMP socket within $START_TIMEOUT s" "$name"
}

# Python clients the checks are written against. Both connect to the
# socket in sys.argv[1] and give the checks fail(message).
PRELUDE_COMMON='
import json
import socket
import struct
import sys


def fail(msg):
    print(msg)
    sys.exit(1)


sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(10)
sock.connect(sys.argv[1])
'

# QMP: qmp(command, **arguments) returns the command's result, after the
# capabilities handshake.
PRELUDE_QMP=$PRELUDE_COMMON'
stream = sock.makefile("rw")


def receive():
    while True:
        line = stream.readline()
        if not line:
            fail("QMP connection closed")
        msg = json.loads(line)
        if "event" not in msg:
            return msg


def qmp(command, **arguments):
    req = {"execute": command}
    if arguments:
        req["arguments"] = arguments
    stream.write(json.dumps(req) + "\n")
    stream.flush()
    resp = receive()
    if "error" in resp:
        err = resp["error"]
        fail(command + ": " + str(err.get("desc", err)))
    return resp["return"]


if "QMP" not in receive():
    fail("no QMP greeting")
qmp("qmp_capabilities")
'

# vfio-user (the protocol of libvfio-user's vfio-user.h): read32/write32
# and read/write on a region (0-5 BARs, 7 config space) after the version
# handshake. Messages are a 16-byte header {id, cmd, size, flags, errno}.
PRELUDE_VFIO_USER=$PRELUDE_COMMON'
VFIO_USER_VERSION = 1
VFIO_USER_REGION_READ = 9
VFIO_USER_REGION_WRITE = 10
VFIO_USER_F_ERROR = 1 << 5
CFG_REGION = 7
msg_id = 0


def recv_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            fail("vfio-user connection closed")
        buf += chunk
    return buf


def call(cmd, payload):
    global msg_id
    msg_id += 1
    sock.sendall(struct.pack("<HHIII", msg_id, cmd, 16 + len(payload), 0, 0)
                 + payload)
    _, _, size, flags, err = struct.unpack("<HHIII", recv_exact(16))
    body = recv_exact(size - 16)
    if flags & VFIO_USER_F_ERROR:
        fail(f"vfio-user command {cmd} failed: errno {err}")
    return body


def read(region, offset, count):
    reply = call(VFIO_USER_REGION_READ,
                 struct.pack("<QII", offset, region, count))
    return reply[16:16 + count]


def write(region, offset, data):
    call(VFIO_USER_REGION_WRITE,
         struct.pack("<QII", offset, region, len(data)) + data)


def read32(region, offset):
    return struct.unpack("<I", read(region, offset, 4))[0]


def write32(region, offset, value):
    write(region, offset, struct.pack("<I", value))


call(VFIO_USER_VERSION, struct.pack("<HH", 0, 1))
'

# py_check NAME PRELUDE SOCKET: runs PRELUDE, then the Python checks on
# stdin, against SOCKET of QEMU NAME.
py_check() {
	local name=$1 prelude=$2 socket=$3 checks
	checks=$(cat)
	"$PY" -c "$prelude$checks" "$socket" >>"$TMP/$name.checks" 2>&1 ||
		fail "checks on '$name': $(tail -n 1 "$TMP/$name.checks")" "$name"
}

log "testing $QEMU"

# 1. The card on the device-model host machine.
start_qemu remote -machine x-remote -device protopciem,id=card
py_check remote "$PRELUDE_QMP" "$TMP/remote.qmp" <<'PY'
version = qmp("query-version")["qemu"]
if (version["major"], version["minor"]) != (10, 0):
    fail(f"query-version: QEMU {version}, expected 10.0.x")

cards = [d for bus in qmp("query-pci") for d in bus["devices"]
         if d.get("qdev_id") == "card"]
if len(cards) != 1:
    fail(f"query-pci: expected one device 'card', found {len(cards)}")
card = cards[0]
ids = (card["id"]["vendor"], card["id"]["device"])
if ids != (0x1F0C, 0x0001):
    fail("query-pci: card is %04x:%04x, expected 1f0c:0001" % ids)
bars = {r["bar"]: r for r in card["regions"]}
for bar, size in ((0, 64 << 10), (2, 1 << 20)):
    region = bars.get(bar)
    if region is None or region["type"] != "memory":
        fail(f"query-pci: no memory BAR{bar} on the card: {card['regions']}")
    if region["size"] != size:
        fail(f"query-pci: BAR{bar} is {region['size']} bytes, expected {size}")
PY
log "ok: x-remote with protopciem (1f0c:0001, BAR0 64 KiB, BAR2 1 MiB), QEMU 10.0.x"

# 2. The bus-less machine.
start_qemu none -machine none
py_check none "$PRELUDE_QMP" "$TMP/none.qmp" <<'PY'
status = qmp("query-status")
if "status" not in status:
    fail(f"query-status: unexpected answer {status}")
PY
log "ok: -machine none answers QMP"

# 3. VNC, on a UNIX socket so parallel runs never fight over a port.
start_qemu vnc -machine none -vnc "unix:$TMP/vnc.sock"
py_check vnc "$PRELUDE_QMP" "$TMP/vnc.qmp" <<'PY'
vnc = qmp("query-vnc")
if not vnc.get("enabled"):
    fail(f"query-vnc: VNC not enabled: {vnc}")
PY
py_check vnc "$PRELUDE_COMMON" "$TMP/vnc.sock" <<'PY'
banner = sock.recv(12)
if not banner.startswith(b"RFB "):
    fail(f"VNC socket answered {banner!r}, not an RFB banner")
PY
log "ok: VNC server up (query-vnc, RFB banner)"

# 4. The card's registers, through the vfio-user server of x-remote (the
# BARs must be placed and memory decoding enabled first, as a host would).
start_qemu regs -machine x-remote,vfio-user=on,auto-shutdown=off \
	-device protopciem,id=card \
	-object "x-vfio-user-server,id=vfu,type=unix,path=$TMP/regs.vfu,device=card" \
	-d guest_errors -trace 'protopciem_*'
for ((i = 0; i < START_TIMEOUT * 10; i++)); do
	[ -S "$TMP/regs.vfu" ] && break
	sleep 0.1
done
[ -S "$TMP/regs.vfu" ] || fail "QEMU 'regs' opened no vfio-user socket" regs
py_check regs "$PRELUDE_VFIO_USER" "$TMP/regs.vfu" <<'PY'
ids = read32(CFG_REGION, 0x00)
if ids != 0x00011F0C:
    fail(f"config space: vendor/device 0x{ids:08x}, expected 0x00011f0c")
write(CFG_REGION, 0x10, struct.pack("<Q", 0x10000000))  # BAR0, 64-bit
write(CFG_REGION, 0x18, struct.pack("<Q", 0x20000000))  # BAR2, 64-bit
write(CFG_REGION, 0x04, struct.pack("<H", 0x0002))      # memory space on

# ID, VERSION (spec 1.0), STATUS, FENCE_NEXT; 0x18 and 0x2000 are undefined.
expect = {0x1000: 0x1F0C0001, 0x1004: 0x00010000, 0x0004: 0, 0x1014: 1,
          0x0018: 0, 0x2000: 0}
for offset, value in expect.items():
    got = read32(0, offset)
    if got != value:
        fail(f"BAR0+0x{offset:x} reads 0x{got:08x}, expected 0x{value:08x}")
both = struct.unpack("<Q", read(0, 0x1000, 8))[0]
if both != 0x000100001F0C0001:
    fail(f"64-bit read of BAR0+0x1000 gives 0x{both:016x}")
write32(0, 0x1000, 0xDEADBEEF)
if read32(0, 0x1000) != 0x1F0C0001:
    fail("the read-only ID register changed on a write")

# One command, the way upstream's driver issues it: DATA, CMD = ADD, then
# poll STATUS for DONE and read RESULT.
write32(0, 0x000C, 21)
write32(0, 0x0008, 0x01)
for _ in range(1000):
    status = read32(0, 0x0004)
    if status & 0x2:
        break
else:
    fail(f"ADD did not complete: STATUS 0x{status:08x}")
if status != 0x2 or read32(0, 0x0010) != 42:
    fail(f"ADD of 21: STATUS 0x{status:08x}, RESULT 0x{read32(0, 0x0010):x}")

pattern = bytes(range(256)) * 4
for offset in (0, (1 << 20) - len(pattern)):
    write(2, offset, pattern)
    if read(2, offset, len(pattern)) != pattern:
        fail(f"BAR2+0x{offset:x} does not keep what was written")
PY
for want in 'protopciem: read of undefined register 0x2000' \
	'protopciem: write of 0xdeadbeef to read-only register 0x1000' \
	'protopciem_regs_read addr 0x1000 size 4 val 0x1f0c0001'; do
	grep -qF "$want" "$TMP/regs.log" || fail "QEMU did not log '$want'" regs
done
log "ok: registers over vfio-user (ID 0x1f0c0001, VERSION 1.0, undefined offsets read 0 and are logged, an ADD, BAR2 memory)"

# Stop everything and make sure nothing is left running.
declare -A STOPPED=()
for name in "${!PIDS[@]}"; do STOPPED[$name]=${PIDS[$name]}; done
cleanup
trap - EXIT
for name in "${!STOPPED[@]}"; do
	! kill -0 "${STOPPED[$name]}" 2>/dev/null ||
		die "QEMU '$name' (pid ${STOPPED[$name]}) is still running after cleanup"
done
log "PASS: all QEMU smoke checks passed; ${#STOPPED[@]} QEMU processes started and stopped"
