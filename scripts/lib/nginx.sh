# Shared by scripts/test: finding, and if need be installing, nginx for the
# end-to-end tests of the HTTP authorization front. The caller defines log().

# find_nginx prints the path of the nginx binary, or nothing.
find_nginx() {
	first_executable "$(command -v nginx 2>/dev/null)" /usr/sbin/nginx
}

# install_nginx installs the Debian package nginx (built with auth_request).
# Without root or sudo it fails under CI and otherwise only says so.
install_nginx() {
	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		if ! command -v sudo >/dev/null; then
			log "nginx is not installed and I am not root: install the Debian package nginx (the nginx tests are skipped)"
			[[ ${CI:-} != true ]] || exit 1
			return
		fi
		sudo=(sudo)
	fi
	log "installing nginx with apt-get"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx
}
