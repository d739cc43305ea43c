# Shared by scripts/test: finding, and if need be installing, Chromium for the
# browser tests (a real browser, headless, driven over the DevTools protocol).
# The caller defines log().

# find_chromium prints the path of the Chromium binary, or nothing.
find_chromium() {
	first_executable "$(command -v chromium 2>/dev/null)" "$(command -v chromium-browser 2>/dev/null)" /usr/bin/chromium
}

# install_chromium installs the Debian package chromium. Without root or
# sudo, or when apt-get fails, it fails the run under CI and otherwise only
# says so (the browser tests are then skipped).
install_chromium() {
	apt_install_or_skip chromium "the browser tests" "(the first time takes a minute or two)"
}
