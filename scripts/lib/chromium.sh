# Shared by scripts/test: finding, and if need be installing, Chromium for the
# browser tests (a real browser, headless, driven over the DevTools protocol).
# The caller defines log().

# find_chromium prints the path of the Chromium binary, or nothing.
find_chromium() {
	local bin
	for bin in "$(command -v chromium 2>/dev/null)" "$(command -v chromium-browser 2>/dev/null)" /usr/bin/chromium; do
		if [[ -n $bin && -x $bin ]]; then
			printf '%s\n' "$bin"
			return
		fi
	done
}

# install_chromium installs the Debian package chromium. Without root or
# sudo, or when apt-get fails, it fails the run under CI and otherwise only
# says so (the browser tests are then skipped).
install_chromium() {
	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		if ! command -v sudo >/dev/null; then
			log "chromium is not installed and I am not root: install the Debian package chromium (the browser tests are skipped)"
			[[ ${CI:-} != true ]] || exit 1
			return
		fi
		sudo=(sudo)
	fi
	log "installing chromium with apt-get (the first time takes a minute or two)"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q || true
	if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; then
		log "chromium could not be installed (the browser tests are skipped)"
		[[ ${CI:-} != true ]] || exit 1
	fi
}
