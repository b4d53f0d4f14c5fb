#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) without sanitizer; prints libFuzzer's summary.
set -u
cd "$(dirname "$0")"
seconds="${1:-60}"
for target in $(ls fuzz_targets | sed 's/\.rs$//'); do
    echo "=== $target"
    cargo fuzz run -s none "$target" -- -max_total_time="$seconds" 2>&1 | grep -E "stat::|Done|ERROR|panicked|SUMMARY|crash-" | tail -6
done
