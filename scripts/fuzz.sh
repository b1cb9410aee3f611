#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a fixed time (seconds, default 30),
# with libFuzzer through cargo-fuzz on the stable toolchain
# (RUSTC_BOOTSTRAP=1 lets it use the sanitizer flags). Exits non-zero if a
# target crashes or a check in aepg::fuzzing fails; the input that did is
# left in fuzz/artifacts/<target>/.
#
# Usage: bash scripts/fuzz.sh [seconds] [target ...]
# AEPG_FUZZ_DEV=1 builds the targets unoptimized: about three times quicker
# to build, several times slower to run — for CI's short smoke runs.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-30}"
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(cell record analysis)

if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "==> installing cargo-fuzz"
	cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
profile=()
[ "${AEPG_FUZZ_DEV:-0}" = 1 ] && profile=(--dev)
for target in "${targets[@]}"; do
	mkdir -p "corpus/$target"
	seeds=()
	[ -d "seeds/$target" ] && seeds=("seeds/$target")
	echo "==> fuzzing $target for ${seconds}s"
	cargo fuzz run "${profile[@]}" "$target" "corpus/$target" "${seeds[@]}" -- \
		-max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 2>&1 |
		grep -E '^(stat::|==|SUMMARY|Test unit written|#[0-9]+ +DONE)|panicked|Error|error' || true
	# cargo-fuzz exits non-zero on a crash; grep above must not hide it.
	status="${PIPESTATUS[0]}"
	if [ "$status" -ne 0 ]; then
		echo "fuzz target $target failed (exit $status); see fuzz/artifacts/$target/" >&2
		exit "$status"
	fi
done
