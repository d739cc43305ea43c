# shellcheck shell=bash
# Sourced by scripts/test and .ci/run: the repository's Go modules and which
# package patterns go to which.
#
# deploy/ is a module of its own (its tests need the Kubernetes, Istio and
# Compose types, which the library's module must not pull in). ./... covers
# both modules; a pattern under ./deploy is run in deploy/ (./deploy/...
# as ./..., ./deploy as .); any other pattern in the main module.

# split_args ARGS... sets main_pkgs and deploy_pkgs to the package patterns
# (arguments that start with ".") for each module, flags to the other
# arguments, and modules to the directories of the modules that have
# patterns (. and deploy). Without any pattern, both modules get ./...
split_args() {
	flags=()
	main_pkgs=()
	deploy_pkgs=()
	local arg
	for arg in "$@"; do
		case $arg in
		./...)
			main_pkgs+=(./...)
			deploy_pkgs+=(./...)
			;;
		./deploy | ./deploy/) deploy_pkgs+=(.) ;;
		./deploy/*) deploy_pkgs+=("./${arg#./deploy/}") ;;
		.*) main_pkgs+=("$arg") ;;
		*) flags+=("$arg") ;;
		esac
	done
	if [[ ${#main_pkgs[@]} -eq 0 && ${#deploy_pkgs[@]} -eq 0 ]]; then
		main_pkgs=(./...)
		deploy_pkgs=(./...)
	fi
	modules=()
	if [[ ${#main_pkgs[@]} -gt 0 ]]; then
		modules+=(.)
	fi
	if [[ ${#deploy_pkgs[@]} -gt 0 ]]; then
		modules+=(deploy)
	fi
}

# pkgs_of DIR prints the package patterns of the module at DIR, one a line.
pkgs_of() {
	if [[ $1 == deploy ]]; then
		printf '%s\n' "${deploy_pkgs[@]}"
	else
		printf '%s\n' "${main_pkgs[@]}"
	fi
}
