#!/usr/bin/env bash
# Installs what building and testing aepg needs beyond a Rust toolchain and
# a C compiler:
# - libclang, which bindgen needs to build pg_query (PostgreSQL's parser,
#   the `pg-parser` feature);
# - SoftHSM2, the PKCS#11 token the `pkcs11` key store is tested against
#   (its module and softhsm2-util).
# Idempotent: installs only what is missing. Uses apt-get as root or
# through sudo.
set -euo pipefail

missing=()
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
if [ -z "${LIBCLANG_PATH:-}" ] && ! installed libclang-dev; then
	missing+=(libclang-dev)
fi
if ! command -v softhsm2-util >/dev/null; then
	missing+=(softhsm2)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
	echo "aepg needs ${missing[*]}: install your system's libclang development package" >&2
	echo "(or set LIBCLANG_PATH) and SoftHSM2" >&2
	exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null; then
		sudo="sudo"
	else
		echo "aepg needs ${missing[*]}: run 'apt-get install ${missing[*]}' as root" >&2
		exit 1
	fi
fi
echo "==> installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
