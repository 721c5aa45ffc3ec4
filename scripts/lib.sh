# shellcheck shell=bash
# Shared helpers for the project's shell tooling. Source it; do not run it.
#
# Everything fetched or built outside the work tree lives under one cache
# folder so that a fresh clone on the same machine reuses it:
#   PCIEM_CACHE (default: ${XDG_CACHE_HOME:-$HOME/.cache}/pciem-gateway)

PCIEM_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PCIEM_CACHE=${PCIEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pciem-gateway}
export PCIEM_TOP PCIEM_CACHE

# Kernel flavours the project supports: name -> Debian suite of its
# linux-image-amd64 metapackage.
# shellcheck disable=SC2034 # used by the scripts that source this file
declare -A PCIEM_KERNEL_SUITE=([6.12]=bookworm-backports [6.1]=bookworm)
# shellcheck disable=SC2034
PCIEM_KERNELS="6.12 6.1"

log()  { printf '[%s] %s\n' "${PCIEM_LOG_TAG:-pciem}" "$*" >&2; }
die()  { printf '[%s] error: %s\n' "${PCIEM_LOG_TAG:-pciem}" "$*" >&2; exit 1; }

# Project-local apt: bookworm, bookworm-backports and trixie (binary and
# source) through a private lists/archives folder. The system's own apt
# sources are never touched.
PCIEM_APT_DIR=$PCIEM_CACHE/apt
pciem_apt_opts() {
	printf '%s\n' \
		-o "Dir::Etc::SourceList=/dev/null" \
		-o "Dir::Etc::SourceParts=$PCIEM_APT_DIR/sources.list.d" \
		-o "Dir::Etc::Preferences=/dev/null" \
		-o "Dir::Etc::PreferencesParts=$PCIEM_APT_DIR/preferences.d" \
		-o "Dir::State::Lists=$PCIEM_APT_DIR/lists" \
		-o "Dir::Cache::Archives=$PCIEM_APT_DIR/archives" \
		-o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" \
		-o "APT::Default-Release=bookworm" \
		-o "APT::Sandbox::User=root"
}

# The Debian mirror the system is already configured with, so the project
# talks to nothing the machine does not already use.
pciem_debian_uri() {
	local uri
	uri=$(grep -hs -E '^(URIs:|deb )' /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null |
		grep -v security | grep -oE 'https?://[^ ]+/debian/?' | head -n1)
	echo "${uri:-http://deb.debian.org/debian}"
}

pciem_apt_setup() {
	mkdir -p "$PCIEM_APT_DIR"/{sources.list.d,preferences.d,lists/partial,archives/partial}
	local src=$PCIEM_APT_DIR/sources.list.d/pciem.sources
	if [ ! -s "$src" ]; then
		cat > "$src" <<EOS
Types: deb deb-src
URIs: $(pciem_debian_uri)
Suites: bookworm bookworm-backports trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
	fi
	# Refresh the lists at most once a day: they are only used to resolve
	# versions the first time something is fetched.
	local stamp=$PCIEM_APT_DIR/lists/.updated
	if [ -z "$(find "$stamp" -mmin -1440 2>/dev/null)" ]; then
		log "updating project-local apt lists (bookworm, bookworm-backports, trixie)"
		# shellcheck disable=SC2046
		apt-get $(pciem_apt_opts) -q update >"$PCIEM_APT_DIR/update.log" 2>&1 ||
			{ tail -n 20 "$PCIEM_APT_DIR/update.log" >&2; die "apt-get update (project-local) failed; see $PCIEM_APT_DIR/update.log"; }
		touch "$stamp"
	fi
}

pciem_apt_cache() {
	# shellcheck disable=SC2046
	apt-cache $(pciem_apt_opts) "$@"
}

pciem_apt_get() {
	# shellcheck disable=SC2046
	apt-get $(pciem_apt_opts) "$@"
}

# Runs a command, logging a line every 15 s while it works so long steps show
# progress even when their own output goes to a log file.
pciem_with_progress() {
	local what=$1; shift
	local start=$SECONDS n=0
	"$@" & local pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		n=$((n + 1))
		[ $((n % 15)) -eq 0 ] && kill -0 "$pid" 2>/dev/null &&
			log "$what: still working ($((SECONDS - start)) s)"
	done
	wait "$pid"
}
