#!/usr/bin/env bash
# The whole test suite, stage by stage, as `make test` runs it. Prints the
# time each stage took and closes with one summary line of the mocha tests:
#   test: N passed, N failed
# A stage that fails stops the run (later stages build on earlier ones).
#
#   scripts/test.sh [STAGE...]     (default: every stage, in order)
set -uo pipefail
export PCIEM_LOG_TAG="test"
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
cd "$PCIEM_TOP" || exit 1

MOCHA=node_modules/.bin/mocha
ALL_STAGES="deps lint typecheck addon unit kernel qemu qemu-tests vm"

stage_cmd() {
	case $1 in
	deps) scripts/deps.sh ;;
	lint) make --no-print-directory lint ;;
	typecheck) make --no-print-directory typecheck ;;
	addon) make --no-print-directory addon ;;
	# Two files at a time (this machine has two cores): 35 s instead of 65.
	unit) mocha_suite 'test/unit/**/*.test.ts' --parallel --jobs 2 ;;
	kernel) make --no-print-directory kernel ;;
	qemu) make --no-print-directory qemu ;;
	# Each file starts its own QEMU, sockets and work folders: 18 s instead of 35.
	qemu-tests) mocha_suite 'test/qemu/**/*.test.ts' --parallel --jobs 2 ;;
	# Each VM suite boots its own TCG guests; two files at a time use both cores.
	vm) mocha_suite 'test/vm/**/*.test.ts' --parallel --jobs 2 ;;
	*) die "unknown stage '$1' (stages: $ALL_STAGES)" ;;
	esac
}

passed=0 failed=0
mocha_suite() {
	local log rc glob=$1
	shift
	log=$(mktemp)
	"$MOCHA" --timeout 600000 --forbid-only --forbid-pending "$glob" "$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	local p f
	p=$(sed -n 's/^ *\([0-9][0-9]*\) passing.*/\1/p' "$log" | tail -n1)
	f=$(sed -n 's/^ *\([0-9][0-9]*\) failing.*/\1/p' "$log" | tail -n1)
	rm -f "$log"
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-0}))
	if [ "$rc" -eq 0 ] && [ "${p:-0}" -eq 0 ]; then
		echo "no test ran in $glob" >&2
		return 1
	fi
	return "$rc"
}

# shellcheck disable=SC2086 # a list of words
[ $# -gt 0 ] || set -- $ALL_STAGES
summary=()
status=0
for s in "$@"; do
	printf '\n==> stage %s\n' "$s"
	t0=$(date +%s.%N)
	stage_cmd "$s"
	rc=$?
	dt=$(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc)")
	if [ "$rc" -eq 0 ]; then
		printf '<== stage %s: ok (%s s)\n' "$s" "$dt"
		summary+=("$(printf '  %-12s ok      %7s s' "$s" "$dt")")
	else
		printf '<== stage %s: FAILED (exit %s, %s s)\n' "$s" "$rc" "$dt"
		summary+=("$(printf '  %-12s FAILED  %7s s' "$s" "$dt")")
		status=1
		# A stage with no test counted still fails the run visibly.
		[ "$failed" -gt 0 ] || failed=$((failed + 1))
		break
	fi
done

printf '\nstages:\n'
printf '%s\n' "${summary[@]}"
printf 'test: %d passed, %d failed\n' "$passed" "$failed"
exit "$status"
