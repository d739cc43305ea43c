# Shared by the scripts/lib/*.sh that find, and if need be install, a real
# part the tests need. The caller defines log().

# first_executable PATH... prints the first PATH that is an executable
# file, or nothing (empty arguments are skipped).
first_executable() {
	local bin
	for bin in "$@"; do
		if [[ -n $bin && -x $bin ]]; then
			printf '%s\n' "$bin"
			return
		fi
	done
}

# apt_install_or_skip PACKAGE TESTS [NOTE] installs the Debian package
# PACKAGE with apt-get (through sudo when not root). When it cannot (neither
# root nor sudo, or apt-get fails) it fails the run under CI and otherwise
# only says so: TESTS (e.g. "the browser tests") are then skipped. NOTE is
# added to the "installing" line.
apt_install_or_skip() {
	local pkg=$1 tests=$2 note=${3:+ $3} sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		if ! command -v sudo >/dev/null; then
			log "$pkg is not installed and I am not root: install the Debian package $pkg ($tests are skipped)"
			[[ ${CI:-} != true ]] || exit 1
			return
		fi
		sudo=(sudo)
	fi
	log "installing $pkg with apt-get$note"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q || true
	if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$pkg"; then
		log "$pkg could not be installed ($tests are skipped)"
		[[ ${CI:-} != true ]] || exit 1
	fi
}
