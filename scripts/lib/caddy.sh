# Shared by scripts/test: finding, and if need be installing, Caddy for the
# end-to-end tests of the HTTP authorization front. The caller defines log().

caddy_version=v2.11.9

# find_caddy prints the path of the caddy binary, or nothing.
find_caddy() {
	first_executable "$(command -v caddy 2>/dev/null)" /usr/bin/caddy "$(go env GOPATH)/bin/caddy"
}

# install_caddy installs the Debian package caddy when apt has it, else
# builds Caddy $caddy_version into $(go env GOPATH)/bin. Failing, it fails
# the run under CI and otherwise only says so.
install_caddy() {
	local sudo=()
	if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then
		sudo=(sudo)
	fi
	if command -v apt-get >/dev/null && { [[ $(id -u) -eq 0 ]] || [[ ${#sudo[@]} -gt 0 ]]; }; then
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q || true
		if apt-cache show caddy >/dev/null 2>&1; then
			log "installing caddy with apt-get"
			if "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends caddy; then
				return
			fi
		fi
	fi
	log "installing caddy $caddy_version with go install"
	if ! go install "github.com/caddyserver/caddy/v2/cmd/caddy@$caddy_version"; then
		log "caddy could not be installed (the caddy tests are skipped)"
		[[ ${CI:-} != true ]] || exit 1
	fi
}
