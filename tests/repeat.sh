#!/usr/bin/env bash
# Run the whole `cargo test` suite N times in a row (default 10) and report
# every test that failed at least once, and any temporary directory a run
# left behind. A flaky test shows up here long before it annoys anyone.
#
#   tests/repeat.sh [N] [-- CARGO_TEST_ARGS...]
#
# Each run gets a private TMPDIR, so that what it leaves behind is told
# apart from what other processes on the machine write to /tmp. Logs of
# failed runs are kept in target/repeat/. Exit status: 0 when every run
# passed and cleaned up, 1 otherwise.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

RUNS=10
if (($#)) && [[ $1 != -- ]]; then
    RUNS=$1
    shift
fi
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "usage: tests/repeat.sh [N] [-- CARGO_TEST_ARGS...]" >&2; exit 2; }
if (($#)) && [[ $1 == -- ]]; then
    shift
fi

LOGS=target/repeat
mkdir -p "$LOGS"
rm -f "$LOGS"/run-*.log

echo "=== building the tests once"
cargo test --no-run --quiet "$@"

declare -A FAILURES=()
failed_runs=0
leaky_runs=0
for ((run = 1; run <= RUNS; run++)); do
    tmp=$(mktemp -d)
    log=$LOGS/run-$run.log
    started=$SECONDS
    status=0
    TMPDIR=$tmp cargo test --quiet "$@" >"$log" 2>&1 || status=$?
    left=$(find "$tmp" -mindepth 1 -maxdepth 1 -printf '%f ' 2>/dev/null)
    rm -rf "$tmp"
    summary="run $run/$RUNS: $((SECONDS - started))s"
    if ((status != 0)); then
        failed_runs=$((failed_runs + 1))
        names=$(sed -n 's/^---- \(.*\) stdout ----$/\1/p' "$log" | sort -u)
        [[ -n $names ]] || names="unnamed-failure(see-$log)"
        for name in $names; do
            FAILURES[$name]=$((${FAILURES[$name]:-0} + 1))
        done
        summary+=", FAILED: $(echo $names)"
    else
        rm -f "$log"
        summary+=", passed"
    fi
    if [[ -n $left ]]; then
        leaky_runs=$((leaky_runs + 1))
        summary+=", left behind in TMPDIR: $left"
    fi
    echo "$summary"
done

if ((failed_runs == 0 && leaky_runs == 0)); then
    echo "all $RUNS runs passed and cleaned up"
    exit 0
fi
echo "$failed_runs of $RUNS runs failed, $leaky_runs left temporary files"
for name in "${!FAILURES[@]}"; do
    echo "  ${FAILURES[$name]}x $name"
done
exit 1
