# Shared by scripts/test: finding, and if need be installing, PgBouncer, and
# running it in transaction mode in front of the throwaway PostgreSQL server.
# The caller defines log().

# find_pgbouncer prints the path of the pgbouncer binary, or nothing.
find_pgbouncer() {
	first_executable "$(command -v pgbouncer 2>/dev/null)" /usr/sbin/pgbouncer
}

# install_pgbouncer installs the Debian package pgbouncer. Without root or
# sudo, or when apt-get fails, it fails the run under CI and otherwise only
# says so (the PgBouncer tests are then skipped).
install_pgbouncer() {
	apt_install_or_skip pgbouncer "the PgBouncer tests"
}

# start_pgbouncer BIN DIR PGPORT [RUNAS...] starts BIN as a daemon in
# transaction mode on a free 127.0.0.1 port, in front of the PostgreSQL
# server on 127.0.0.1:PGPORT (trust authentication, user postgres), with the
# settings docs/operations.md documents ("PgBouncer in transaction mode").
# Every database name is passed through to the server of the same name, so
# the per-test databases of internal/pgtest are reachable. DIR (writable by
# the user it runs as) holds its configuration, log and pid file; RUNAS is
# the command prefix that runs it as another user (pgbouncer refuses root).
# It exports EXTAUTHZ_TEST_PGBOUNCER_URL.
start_pgbouncer() {
	local bin=$1 dir=$2 pgport=$3
	shift 3
	local runas=("$@")
	printf '"postgres" ""\n' >"$dir/userlist.txt"
	local attempt port
	for attempt in 1 2 3 4 5 6 7 8 9 10; do
		port=$((20000 + RANDOM % 40000))
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			continue # something listens there
		fi
		cat >"$dir/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$pgport

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
pool_mode = transaction
ignore_startup_parameters = statement_timeout
auth_type = trust
auth_file = $dir/userlist.txt
max_client_conn = 1000
default_pool_size = 20
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF
		if (cd "$dir" && "${runas[@]}" "$bin" -d -q "$dir/pgbouncer.ini") 2>>"$dir/start.log"; then
			local i
			for i in $(seq 1 100); do
				if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
					export EXTAUTHZ_TEST_PGBOUNCER_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
					log "PgBouncer $("$bin" --version | awk 'NR == 1 {print $2}') (pool_mode = transaction) on 127.0.0.1:$port"
					return
				fi
				sleep 0.1
			done
			stop_pgbouncer "$dir"
		fi
		log "PgBouncer did not start on port $port (attempt $attempt)"
	done
	cat "$dir/start.log" "$dir/pgbouncer.log" >&2 2>/dev/null || true
	log "could not start PgBouncer"
	exit 1
}

# stop_pgbouncer DIR stops the PgBouncer that start_pgbouncer started with
# DIR, by the process ID in its pid file.
stop_pgbouncer() {
	local dir=$1 pid i
	pid=$(cat "$dir/pgbouncer.pid" 2>/dev/null) || return 0
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}
