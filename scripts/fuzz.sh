#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60) and fails on a crash, a
# panic, an input slower than 10 s or a run over 2 GiB of memory.
#
#   scripts/fuzz.sh [SECONDS]
#
# Targets: http_binding (the HTTP binding decoder, binary mode round trip), structured_json (the
# structured and batch JSON parsers, round trip), cesql (parser and evaluator), yaml_loader (the
# resource loader). Seeds are in fuzz/corpus/<target> and are never changed; what a run learns
# goes to fuzz/work/<target> (not committed), and a crash to fuzz/artifacts/<target>/, with the
# command that replays it.
#
# Needs cargo-fuzz (installed here from crates.io when missing) and a nightly toolchain for
# libFuzzer's instrumentation and AddressSanitizer. Without nightly it builds with the stable
# toolchain and RUSTC_BOOTSTRAP=1, without a sanitizer: the code is safe Rust, and the sanitizer
# mostly watches the unsafe code of the dependencies (the YAML parser is a C port).
set -euo pipefail

seconds="${1:-60}"
cd "$(dirname "$0")/../fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --version 0.13.2 --locked
fi

# KNACTOR_FUZZ_TOOLCHAIN=stable takes the stable path even where nightly is installed (what CI
# does: a fresh machine has only the project's pinned stable toolchain).
if [[ ${KNACTOR_FUZZ_TOOLCHAIN:-} != stable ]] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
    sanitizer=(--sanitizer address)
else
    echo "fuzz: no nightly toolchain; stable with RUSTC_BOOTSTRAP=1, no sanitizer" >&2
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
    sanitizer=(--sanitizer none)
fi

started=$SECONDS
"${fuzz[@]}" build "${sanitizer[@]}"
echo "fuzz: built in $((SECONDS - started)) s" >&2

failed=()
for target in $("${fuzz[@]}" list); do
    mkdir -p "work/$target"
    echo "fuzz: $target for ${seconds} s" >&2
    if ! "${fuzz[@]}" run "${sanitizer[@]}" "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        2> "work/$target.log"; then
        tail -n 40 "work/$target.log" >&2
        failed+=("$target")
    else
        grep -E '^(Done|stat::number_of_executed_units)' "work/$target.log" >&2 || true
    fi
done

if ((${#failed[@]})); then
    for target in "${failed[@]}"; do
        for artifact in artifacts/"$target"/*; do
            [[ -e $artifact ]] || continue
            echo "fuzz: $target failed on fuzz/$artifact; replay: (cd fuzz && ${fuzz[*]} run ${sanitizer[*]} $target $artifact)" >&2
        done
    done
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: every target ran ${seconds} s without a failure ($((SECONDS - started)) s in all)" >&2
