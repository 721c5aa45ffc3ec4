#!/usr/bin/env bash
# Installs everything the project needs: Debian packages (system apt for
# bookworm packages), npm packages, Debian's kernels into the cache.
# Idempotent, and a no-op in seconds once done.
set -euo pipefail
export PCIEM_LOG_TAG="deps"
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

wanted_packages() {
	cat "$PCIEM_TOP"/scripts/packages.debian "$PCIEM_TOP"/*/packages.debian \
		"$PCIEM_TOP"/*/*/packages.debian 2>/dev/null |
		sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u
}

missing_packages() {
	local p
	for p in $(wanted_packages); do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
	done
}

debian() {
	local missing
	missing=$(missing_packages)
	[ -z "$missing" ] && return 0
	[ "$(id -u)" -eq 0 ] || die "Debian packages missing and not root: $(echo "$missing" | tr "\n" " ")"
	log "installing Debian packages: $(echo "$missing" | tr "\n" " ")"
	export DEBIAN_FRONTEND=noninteractive
	pciem_with_progress "apt-get update" apt-get -q update >"$PCIEM_CACHE/apt-system.log" 2>&1 ||
		{ tail -n 20 "$PCIEM_CACHE/apt-system.log" >&2; die "apt-get update failed"; }
	# shellcheck disable=SC2086
	pciem_with_progress "apt-get install" apt-get -q install -y --no-install-recommends $missing \
		>>"$PCIEM_CACHE/apt-system.log" 2>&1 ||
		{ tail -n 20 "$PCIEM_CACHE/apt-system.log" >&2; die "apt-get install failed; see $PCIEM_CACHE/apt-system.log"; }
}

npm_packages() {
	cd "$PCIEM_TOP"
	local stamp=node_modules/.package-lock.json
	if [ -f "$stamp" ] && [ "$stamp" -nt package-lock.json ] && [ "$stamp" -nt package.json ]; then
		return 0
	fi
	log "installing npm packages (npm ci)"
	npm ci --no-audit --no-fund --loglevel=error
	touch "$stamp"
}

mkdir -p "$PCIEM_CACHE"
case ${1:-all} in
debian) debian ;;
npm) npm_packages ;;
kernels) "$PCIEM_TOP/scripts/kernels.sh" fetch ;;
all) debian; npm_packages; "$PCIEM_TOP/scripts/kernels.sh" fetch ;;
*) die "usage: $0 [all|debian|npm|kernels]" ;;
esac
