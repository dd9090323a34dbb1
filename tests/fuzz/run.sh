#!/usr/bin/env bash
# Fuzz every cargo-fuzz target in tests/fuzz/ for a while; fail on any
# crash, hang or runaway memory use.
#
#   tests/fuzz/run.sh [--seconds N] [--sanitizer address|none] [--dev] [--toolchain NAME] [--jobs N]
#
# --seconds     how long each target runs (default 180)
# --sanitizer   address (default) or none; leak, memory and thread need
#               a nightly toolchain's std and are not offered
# --dev         build with the dev profile of tests/fuzz/Cargo.toml (light
#               optimisation): quicker to build from scratch, slower per input
# --toolchain   the rustup toolchain to build with (default stable: CI has
#               only stable, so this runs what CI runs)
# --jobs        targets fuzzed at once (default: the number of cores)
#
# Works on the stable toolchain: cargo-fuzz's instrumentation flags are
# stable codegen options, and the address sanitizer's runtime ships with
# stable's std; only its -Zsanitizer flag is unstable, which
# RUSTC_BOOTSTRAP=1 admits. Installs cargo-fuzz when it is missing.
#
# Each target starts from tests/fuzz/seeds/TARGET (inputs made from the
# project's test fixtures; see tests/fuzz/README.md) and, for the task-list
# target, every markdown file of the repository, and keeps what it learns in
# tests/fuzz/corpus/TARGET (not committed). A failing input is saved under
# tests/fuzz/artifacts/TARGET/; the script prints how to replay it. Every
# input that ever failed belongs in the normal test suite as a regression
# test.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
# The fuzz package (its own workspace) lives beside this script.
FUZZ_DIR=tests/fuzz

SECONDS_EACH=180
SANITIZER=address
TOOLCHAIN=stable
JOBS=$(nproc)
BUILD_FLAGS=()
while (($#)); do
    case $1 in
        --seconds) SECONDS_EACH=$2; shift 2 ;;
        --sanitizer) SANITIZER=$2; shift 2 ;;
        --dev) BUILD_FLAGS+=(--dev); shift ;;
        --toolchain) TOOLCHAIN=$2; shift 2 ;;
        --jobs) JOBS=$2; shift 2 ;;
        -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $SECONDS_EACH =~ ^[1-9][0-9]*$ ]] || { echo "--seconds takes a positive number" >&2; exit 2; }
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "--jobs takes a positive number" >&2; exit 2; }
case $SANITIZER in
    address | none) ;;
    *) echo "--sanitizer: address or none (others need a nightly std)" >&2; exit 2 ;;
esac

# Which toolchain builds the targets: rustup's +NAME where rustup exists.
CARGO=(cargo)
if command -v rustup >/dev/null 2>&1; then
    CARGO=(cargo "+$TOOLCHAIN")
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "=== installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

# The address sanitizer flag is still unstable; its runtime is in stable's std.
export RUSTC_BOOTSTRAP=1

# Per-target libFuzzer options. -timeout: one input taking longer is a hang.
# -rss_limit_mb: a parser that balloons is a failure too. -max_len: webhook
# payloads are tens of kilobytes; markdown is amplified by the target itself.
declare -A MAX_LEN=([webhook]=65536 [tasklist]=16384)
LIBFUZZER_OPTIONS=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1)

# `fuzz run` builds again with its own flags: both get the same ones, so
# that it finds the targets built.
BUILD_FLAGS+=(--sanitizer "$SANITIZER")
echo "=== building the fuzz targets (${CARGO[*]} fuzz build --fuzz-dir $FUZZ_DIR ${BUILD_FLAGS[*]})"
"${CARGO[@]}" fuzz build --fuzz-dir "$FUZZ_DIR" "${BUILD_FLAGS[@]}"

mapfile -t TARGETS < <("${CARGO[@]}" fuzz list --fuzz-dir "$FUZZ_DIR")
((${#TARGETS[@]} > 0)) || { echo "no fuzz targets in $FUZZ_DIR/" >&2; exit 1; }

STAMPS=$(mktemp -d)
trap 'rm -rf "$STAMPS"' EXIT

# One target, its output in LOG; its exit status says whether it passed.
fuzz_target() {
    local target=$1 log=$2 corpus artifacts stamp status=0 found
    corpus=$REPO/$FUZZ_DIR/corpus/$target
    artifacts=$REPO/$FUZZ_DIR/artifacts/$target
    mkdir -p "$corpus" "$artifacts"
    if [[ $target == tasklist ]]; then
        # Real markdown of this project: the README, the pull request
        # template and the rest.
        git ls-files -z '*.md' | while IFS= read -r -d '' file; do
            cp "$file" "$corpus/fixture-$(printf '%s' "$file" | tr '/' '-')"
        done
    fi
    stamp=$STAMPS/$target
    touch "$stamp"
    "${CARGO[@]}" fuzz run --fuzz-dir "$FUZZ_DIR" "${BUILD_FLAGS[@]}" "$target" "$corpus" "$REPO/$FUZZ_DIR/seeds/$target" -- \
        "${LIBFUZZER_OPTIONS[@]}" -max_len="${MAX_LEN[$target]:-65536}" \
        -max_total_time="$SECONDS_EACH" -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
    found=$(find "$artifacts" -type f -newer "$stamp")
    if ((status != 0)) || [[ -n $found ]]; then
        {
            echo "!!! $target failed (exit $status). Inputs that failed:"
            printf '    %s\n' $found
            echo "    replay: ${CARGO[*]} fuzz run --fuzz-dir $FUZZ_DIR ${BUILD_FLAGS[*]} $target $FUZZ_DIR/artifacts/$target/<file>"
            echo "    shrink: ${CARGO[*]} fuzz tmin --fuzz-dir $FUZZ_DIR ${BUILD_FLAGS[*]} $target $FUZZ_DIR/artifacts/$target/<file>"
        } >>"$log"
        return 1
    fi
}

# The targets run side by side, one per core (libFuzzer's process is
# single-threaded); each one's output is printed when it ends.
echo "=== fuzzing ${TARGETS[*]} for ${SECONDS_EACH}s each, $JOBS at a time"
running=0
for target in "${TARGETS[@]}"; do
    if ((running >= JOBS)); then
        wait -n || true
        running=$((running - 1))
    fi
    (
        status=0
        fuzz_target "$target" "$STAMPS/$target.log" || status=$?
        echo "$status" >"$STAMPS/$target.status"
    ) &
    running=$((running + 1))
done
wait
failed=()
for target in "${TARGETS[@]}"; do
    status=$(cat "$STAMPS/$target.status" 2>/dev/null || echo "none")
    echo "=== $target (exit $status)"
    if [[ $status == 0 ]]; then
        # libFuzzer's progress lines are many; its final figures suffice.
        grep -E '^(Done |stat::)' "$STAMPS/$target.log" | sed 's/^/    /'
    else
        tail -n 80 "$STAMPS/$target.log"
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "fuzzing failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzzing passed: ${TARGETS[*]}, ${SECONDS_EACH}s each"
