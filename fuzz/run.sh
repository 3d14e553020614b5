#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: `fuzz/run.sh [seconds-per-target]`
# (default 20). Installs cargo-fuzz when missing. The seed corpus in fuzz/corpus is
# read, never written: new inputs go to a scratch folder that is removed afterwards,
# so a run leaves the repository as it found it. Exits non-zero when any target
# crashes, naming the input that caused it (kept under fuzz/artifacts/<target>/).
#
# Needs only the stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z
# flags through. Targets are built without a sanitizer: the crates forbid unsafe
# code, so libFuzzer's coverage guidance and Rust's own checks (panics, overflow
# checks, debug assertions) are what find bugs here.
set -euo pipefail

seconds="${1:-20}"
fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
targets=(codes precert_rules oncology_catalogue secondopinion_catalogue notify_rules notify_templates)
cargo_fuzz_version="0.13.2"

export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version 2>/dev/null | grep -q "cargo-fuzz ${cargo_fuzz_version}"; then
    echo "installing cargo-fuzz ${cargo_fuzz_version}"
    cargo install cargo-fuzz --locked --version "${cargo_fuzz_version}"
fi

build_flags=(--fuzz-dir "$fuzz_dir" --sanitizer none --debug-assertions)

start=$(date +%s)
cargo fuzz build "${build_flags[@]}"
echo "fuzz: built ${#targets[@]} targets in $(($(date +%s) - start)) s"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=0
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target" "$fuzz_dir/artifacts/$target"
    touch "$scratch/$target.start"
    start=$(date +%s)
    if cargo fuzz run "${build_flags[@]}" "$target" \
        "$scratch/$target" "$fuzz_dir/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$scratch/$target.log" 2>&1; then
        echo "fuzz: $target: ok in $(($(date +%s) - start)) s ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$target.log" | grep -o '[0-9]*$' || echo '?') runs)"
    else
        tail -n 60 "$scratch/$target.log"
        find "$fuzz_dir/artifacts/$target" -type f -newer "$scratch/$target.start" |
            sed "s|^|fuzz: $target: crash input saved at |"
        echo "fuzz: $target: FAILED"
        failed=1
    fi
done
exit "$failed"
