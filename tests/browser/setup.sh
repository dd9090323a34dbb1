#!/usr/bin/env bash
# `task-list-bot setup` clicked through in a real headless browser: the page
# served on localhost, its "Register GitHub App" button posting the manifest
# to the fake GitHub's registration form, GitHub's redirect back with a
# code, the exchange, and the development .env it writes.
#
#   tests/browser/setup.sh [--bot BIN] [--fake FAKE_BIN] [--screenshots DIR]
#
# BIN and FAKE_BIN default to cargo's debug builds (built when missing).
# Installs Debian's chromium, chromium-driver and python3-selenium when
# missing (as root); never lets a tool download a browser or a driver.
# Prints `ok - …` lines and `N passed, M failed`; exits non-zero on failure.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BOT=""
FAKE=""
SCREENSHOTS=""
while [ $# -gt 0 ]; do
    case $1 in
        --bot) BOT=$2; shift 2 ;;
        --fake) FAKE=$2; shift 2 ;;
        --screenshots) SCREENSHOTS=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

PASSED=0
FAILED=0
ok() { echo "ok - $*"; PASSED=$((PASSED + 1)); }
not_ok() { echo "not ok - $*"; FAILED=$((FAILED + 1)); }

# The system's python3 is the one Debian's python3-selenium belongs to.
PYTHON=/usr/bin/python3
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
{ [ -x "$PYTHON" ] && "$PYTHON" -c 'import selenium' 2>/dev/null; } || missing+=(python3-selenium)
command -v curl >/dev/null || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "# installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ -z "$BOT" ] || [ -z "$FAKE" ]; then
    (cd "$REPO" && cargo build -q --bin task-list-bot --example fake_github)
    BOT=${BOT:-$REPO/target/debug/task-list-bot}
    FAKE=${FAKE:-$REPO/target/debug/examples/fake_github}
fi
BOT=$(realpath "$BOT")
FAKE=$(realpath "$FAKE")

WORK=$(mktemp -d /tmp/tlb-browser.XXXXXX)
FAKE_PID=""
SETUP_PID=""
cleanup() {
    [ -n "$SETUP_PID" ] && kill "$SETUP_PID" 2>/dev/null || true
    [ -n "$FAKE_PID" ] && kill "$FAKE_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# wait_for SECONDS CMD...: CMD every 0.2 s until it succeeds.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

"$FAKE" --listen 127.0.0.1:0 --app-id 1 --public-key "$REPO/tests/data/test-app-key.pub.pem" \
    --addr-file "$WORK/fake-addr" >"$WORK/fake.log" 2>&1 &
FAKE_PID=$!
wait_for 20 test -s "$WORK/fake-addr" || { not_ok "the fake GitHub starts"; exit 1; }
API=$(cat "$WORK/fake-addr")
GITHUB=${API%/api/v3}

mkdir "$WORK/dev"
(cd "$WORK/dev" && exec env -i PATH="$PATH" "$BOT" setup --dev \
    --webhook-url https://bot.example.org/ --github-url "$GITHUB" --timeout 120 \
    >"$WORK/setup.out" 2>"$WORK/setup.err") &
SETUP_PID=$!
page_printed() { grep -qo 'http://127.0.0.1:[0-9]*/?token=[0-9a-f]*' "$WORK/setup.out"; }
if wait_for 20 page_printed; then
    ok "setup prints its page's URL"
else
    not_ok "setup prints its page's URL"
    sed 's/^/# /' "$WORK/setup.out" "$WORK/setup.err"
    exit 1
fi
PAGE=$(grep -o 'http://127.0.0.1:[0-9]*/?token=[0-9a-f]*' "$WORK/setup.out")

# Without the token the page shows nothing.
status=$(curl -s -o /dev/null -w '%{http_code}' "${PAGE%%\?*}")
if [ "$status" = 403 ]; then ok "the page without its token is refused"; else not_ok "the page without its token answers $status"; fi

[ -n "$SCREENSHOTS" ] && mkdir -p "$SCREENSHOTS"
if "$PYTHON" "$REPO/tests/browser/click_through.py" "$PAGE" ${SCREENSHOTS:+"$SCREENSHOTS"} >"$WORK/browser.out" 2>"$WORK/browser.err"; then
    cat "$WORK/browser.out"
    PASSED=$((PASSED + $(grep -c '^ok - ' "$WORK/browser.out")))
else
    cat "$WORK/browser.out"
    sed 's/^/# /' "$WORK/browser.err" | tail -20
    PASSED=$((PASSED + $(grep -c '^ok - ' "$WORK/browser.out" || true)))
    not_ok "the browser clicks through the page"
fi

setup_status=0
if wait_for 20 bash -c "! kill -0 $SETUP_PID 2>/dev/null"; then
    wait "$SETUP_PID" || setup_status=$?
    SETUP_PID=""
    if [ "$setup_status" = 0 ]; then ok "setup exits 0 after the registration"; else not_ok "setup exits $setup_status"; fi
else
    not_ok "setup ends after the registration"
fi

ENV_FILE=$WORK/dev/.env
if [ "$(stat -c %a "$ENV_FILE" 2>/dev/null)" = 600 ] && grep -qx 'APP_ID=1' "$ENV_FILE" \
    && grep -q '^PRIVATE_KEY="-----BEGIN' "$ENV_FILE" && grep -Eq '^WEBHOOK_SECRET=[0-9a-f]{40}$' "$ENV_FILE"; then
    ok ".env holds APP_ID, PRIVATE_KEY and WEBHOOK_SECRET, mode 0600"
else
    not_ok ".env holds the credentials, mode 0600"
fi
secret=$(sed -n 's/^WEBHOOK_SECRET=//p' "$ENV_FILE" 2>/dev/null)
if grep -q "$GITHUB/apps/task-list-bot/installations/new" "$WORK/setup.out" \
    && [ -n "$secret" ] && ! grep -q -e "$secret" -e 'PRIVATE KEY' "$WORK/setup.out" "$WORK/setup.err"; then
    ok "setup prints the install link and no secret"
else
    not_ok "setup prints the install link and no secret"
    sed 's/^/# /' "$WORK/setup.out" "$WORK/setup.err"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
