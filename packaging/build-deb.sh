#!/usr/bin/env bash
# Build the Debian package of task-list-bot.
#
#   packaging/build-deb.sh [--deb-version VERSION] [--output PATH] [--no-build]
#
# 1. cargo build --release --bin task-list-bot (skipped with --no-build, when
#    target/release/task-list-bot is already built)
# 2. the man page: packaging/task-list-bot.1 must be what `task-list-bot man`
#    prints; when it is not, it is rewritten (and should be committed)
# 3. cargo deb --no-build (assets, scripts and metadata: [package.metadata.deb]
#    in Cargo.toml, files in packaging/)
#
# `cargo deb` by itself builds the same package from the committed man page.
#
# --deb-version overrides the package version (e.g. 0.1.0-2 for an upgrade
# test); --output is passed to cargo deb (a file or a directory). Prints the
# path of the .deb on the last line. Needs cargo-deb
# (`cargo install --locked cargo-deb`).

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

DEB_ARGS=()
BUILD=1
while (($#)); do
    case $1 in
        --deb-version) DEB_ARGS+=(--deb-version "$2"); shift 2 ;;
        --output) DEB_ARGS+=(--output "$2"); shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

command -v cargo-deb >/dev/null || {
    echo "cargo-deb is missing: cargo install --locked cargo-deb" >&2
    exit 2
}

# cargo deb reads target/release/ under the real target directory.
TARGET_DIR=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET_DIR/release/task-list-bot

if ((BUILD)); then
    cargo build --release --locked --bin task-list-bot
fi
[[ -x $BIN ]] || { echo "no release binary at $BIN (build it, or drop --no-build)" >&2; exit 2; }
# The test-only fault hook (cargo feature fault-injection) never ships.
if grep -q TASK_LIST_BOT_FAULT "$BIN"; then
    echo "$BIN was built with --features fault-injection: rebuild it without (drop --no-build)" >&2
    exit 2
fi

# The man page asset (packaging/task-list-bot.1, gzipped by cargo deb) comes
# from the binary's clap definitions: the package holds this binary's page.
PAGE=packaging/task-list-bot.1
"$BIN" man >"$PAGE.tmp"
if cmp -s "$PAGE.tmp" "$PAGE"; then
    rm "$PAGE.tmp"
else
    mv "$PAGE.tmp" "$PAGE"
    echo "note: $PAGE was out of date and has been regenerated from $BIN; commit it" >&2
fi

out=$(cargo deb --no-build --locked "${DEB_ARGS[@]}")
echo "$out"
