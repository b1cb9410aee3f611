#!/usr/bin/env bash
# Installs what building aepg needs beyond a Rust toolchain and a C
# compiler: libclang, which bindgen needs to build pg_query (PostgreSQL's
# parser, the `pg-parser` feature). Idempotent: does nothing when libclang
# is there (or LIBCLANG_PATH is set). Uses apt-get as root or through sudo.
set -euo pipefail

has_libclang() {
	[ -n "${LIBCLANG_PATH:-}" ] && return 0
	dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q "install ok installed"
}

has_libclang && exit 0
if ! command -v apt-get >/dev/null; then
	echo "aepg needs libclang to build (its pg-parser feature): install your system's" >&2
	echo "libclang development package, or set LIBCLANG_PATH" >&2
	exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null; then
		sudo="sudo"
	else
		echo "aepg needs libclang-dev to build: run 'apt-get install libclang-dev' as root" >&2
		exit 1
	fi
fi
echo "==> installing libclang-dev (to build pg_query)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libclang-dev >/dev/null
