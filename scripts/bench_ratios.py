#!/usr/bin/env python3
"""Prints the throughput ratios of aepg's cell cipher against the anchors'
constructions, from the estimates criterion wrote in target/criterion.

Run after `cargo bench -p aepg --bench cell_cipher`. Ratios (not absolute
times) are what docs/BENCHMARKS.md records: machines are noisy, but all
contenders were measured in the same run.
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
GROUPS = ["encrypt-deterministic", "encrypt-randomized", "decrypt-deterministic", "decrypt-randomized"]
SIZES = [16, 256, 4096]
# Targets of the foundation issue: aepg's throughput over each anchor's.
TARGET = {16: 1.5, 256: 1.5, 4096: 2.0}


def mean_ns(group, contender, size):
    path = ROOT / group / contender / str(size) / "new" / "estimates.json"
    return json.loads(path.read_text())["mean"]["point_estimate"]


def main():
    missing = False
    print("| operation | size | aepg ns | vs SQL Server | vs MongoDB | target |")
    print("|---|---|---|---|---|---|")
    for group in GROUPS:
        for size in SIZES:
            try:
                aepg = mean_ns(group, "aepg", size)
                ratios = [mean_ns(group, other, size) / aepg for other in ("sqlserver", "mongodb")]
            except FileNotFoundError as error:
                print(f"missing estimate: {error.filename}", file=sys.stderr)
                missing = True
                continue
            met = all(r >= TARGET[size] for r in ratios)
            print(f"| {group} | {size} B | {aepg:.0f} | {ratios[0]:.2f}x | {ratios[1]:.2f}x | "
                  f"{TARGET[size]}x {'met' if met else 'MISSED'} |")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
