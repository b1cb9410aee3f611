#!/usr/bin/env bash
# Installs what building and testing aepg needs beyond a Rust toolchain and
# a C compiler:
# - libclang, which bindgen needs to build pg_query (PostgreSQL's parser,
#   the `pg-parser` feature);
# - SoftHSM2, the PKCS#11 token the `pkcs11` key store is tested against
#   (its module and softhsm2-util);
# - Microsoft's Azure Key Vault Python SDK (`azure-keyvault-keys`, pip),
#   which proves the local Key Vault test server (kvserver/) conforms.
# Idempotent: installs only what is missing. Uses apt-get as root or
# through sudo.
set -euo pipefail

# The SDK versions the conformance test was written against (pinned: it
# checks the SDK's URL shapes and challenge flow).
if ! python3 -c "import azure.keyvault.keys" 2>/dev/null; then
	echo "==> installing azure-keyvault-keys (pip)"
	python3 -m pip install -q --disable-pip-version-check \
		'azure-keyvault-keys==4.11.3' 'azure-core==1.41.0'
fi

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
