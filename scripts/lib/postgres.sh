# Shared by scripts/test and scripts/dev: finding, and if need be installing,
# the system's PostgreSQL server binaries. The caller defines log().

# find_pg_bindir prints the directory holding initdb and pg_ctl, newest
# PostgreSQL version first, or nothing.
find_pg_bindir() {
	local initdb dir
	if initdb=$(command -v initdb 2>/dev/null); then
		dir=$(dirname "$(readlink -f "$initdb")")
		if [[ -x $dir/pg_ctl ]]; then
			printf '%s\n' "$dir"
			return
		fi
	fi
	for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
		if [[ -x $dir/initdb && -x $dir/pg_ctl ]]; then
			printf '%s\n' "$dir"
			return
		fi
	done
}

install_postgres() {
	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		if ! command -v sudo >/dev/null; then
			log "PostgreSQL is not installed and I am not root: install the Debian package postgresql (tests can instead use EXTAUTHZ_TEST_DATABASE_URL)"
			exit 1
		fi
		sudo=(sudo)
	fi
	log "installing PostgreSQL with apt-get"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
}
