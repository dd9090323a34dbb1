#!/usr/bin/env bash
# Run the whole `cargo test` suite N times in a row (default 10) and report
# every test that failed at least once, and any temporary directory a run
# left behind. A flaky test shows up here long before it annoys anyone.
#
#   tests/repeat.sh [N] [--jobs J] [-- TEST_ARGS...]
#
# The test binaries are built once (`cargo test --no-run`); each run then
# starts every binary as `cargo test` would (from the package root), J at a
# time (default 3; most tests wait on sockets and timers, not on the CPU),
# the slowest of the previous run first. The doc tests run once, before the
# first run. TEST_ARGS go to every test binary (a name filter, --exact,
# --test-threads N, ...).
#
# Each run gets a private TMPDIR, so that what it leaves behind is told
# apart from what other processes on the machine write to /tmp. Logs of
# failed binaries are kept in target/repeat/. Exit status: 0 when every run
# passed and cleaned up, 1 otherwise.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

usage() { echo "usage: tests/repeat.sh [N] [--jobs J] [-- TEST_ARGS...]" >&2; exit 2; }

RUNS=10
JOBS=3
TEST_ARGS=()
while (($#)); do
    case $1 in
        --jobs) (($# >= 2)) || usage; JOBS=$2; shift 2 ;;
        --) shift; TEST_ARGS=("$@"); break ;;
        -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) [[ $1 =~ ^[1-9][0-9]*$ ]] || usage; RUNS=$1; shift ;;
    esac
done
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || usage

LOGS=target/repeat
mkdir -p "$LOGS"
rm -f "$LOGS"/*.log

echo "=== building the tests once"
mapfile -t BINARIES < <(
    cargo test --no-run --quiet --message-format=json |
        python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["profile"]["test"] and message.get("executable"):
        print(message["executable"])
'
)
((${#BINARIES[@]} > 0)) || { echo "no test binaries were built" >&2; exit 1; }
echo "${#BINARIES[@]} test binaries, $JOBS at a time"

echo "=== doc tests"
if ! cargo test --doc --quiet >"$LOGS/doc-tests.log" 2>&1; then
    cat "$LOGS/doc-tests.log"
    exit 1
fi

# The name a binary's log and timing go under: its file name (cargo's
# NAME-HASH; the library's and the binary's unit tests share a NAME).
name_of() { echo "${1##*/}"; }

# Seconds each binary took in the previous run; the slowest start first.
declare -A TOOK=()

declare -A FAILURES=()
failed_runs=0
leaky_runs=0
for ((run = 1; run <= RUNS; run++)); do
    tmp=$(mktemp -d)
    results=$(mktemp -d "$LOGS/results.XXXXXX")
    started=$SECONDS

    mapfile -t ORDER < <(
        for binary in "${BINARIES[@]}"; do
            printf '%s %s\n' "${TOOK[$(name_of "$binary")]:-999}" "$binary"
        done | sort -rn | cut -d' ' -f2-
    )
    running=0
    for binary in "${ORDER[@]}"; do
        if ((running >= JOBS)); then
            wait -n || true
            running=$((running - 1))
        fi
        (
            name=$(name_of "$binary")
            begun=$SECONDS
            status=0
            TMPDIR=$tmp "$binary" "${TEST_ARGS[@]}" >"$results/$name.log" 2>&1 || status=$?
            echo "$status $((SECONDS - begun))" >"$results/$name.result"
        ) &
        running=$((running + 1))
    done
    wait

    failed=()
    for binary in "${BINARIES[@]}"; do
        name=$(name_of "$binary")
        read -r status took <"$results/$name.result"
        TOOK[$name]=$took
        if ((status != 0)); then
            failed+=("$name")
            cp "$results/$name.log" "$LOGS/run-$run-$name.log"
        fi
    done
    rm -rf "$results"
    left=$(find "$tmp" -mindepth 1 -maxdepth 1 -printf '%f ' 2>/dev/null)
    rm -rf "$tmp"

    summary="run $run/$RUNS: $((SECONDS - started))s"
    if ((${#failed[@]} > 0)); then
        failed_runs=$((failed_runs + 1))
        names=""
        for name in "${failed[@]}"; do
            tests=$(sed -n 's/^---- \(.*\) stdout ----$/\1/p' "$LOGS/run-$run-$name.log" | sort -u)
            [[ -n $tests ]] || tests="(see-$LOGS/run-$run-$name.log)"
            for test in $tests; do
                FAILURES["$name::$test"]=$((${FAILURES["$name::$test"]:-0} + 1))
                names+=" $name::$test"
            done
        done
        summary+=", FAILED:$names"
    else
        summary+=", passed"
    fi
    if [[ -n $left ]]; then
        leaky_runs=$((leaky_runs + 1))
        summary+=", left behind in TMPDIR: $left"
    fi
    echo "$summary"
done

slowest=$(for name in "${!TOOK[@]}"; do echo "${TOOK[$name]}s ${name%-*}"; done | sort -rn | head -n 5 | paste -sd, - | sed 's/,/, /g')
echo "slowest binaries in the last run: $slowest"
if ((failed_runs == 0 && leaky_runs == 0)); then
    echo "all $RUNS runs passed and cleaned up"
    exit 0
fi
echo "$failed_runs of $RUNS runs failed, $leaky_runs left temporary files"
for name in "${!FAILURES[@]}"; do
    echo "  ${FAILURES[$name]}x $name"
done
exit 1
