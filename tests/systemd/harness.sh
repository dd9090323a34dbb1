# shellcheck shell=bash
# The harness of the tests that run task-list-bot under a booted systemd
# (sourced, not run): tests/systemd/e2e.sh, tests/chaos/chaos.sh and
# tests/deb/test.sh, tests/hosts/two_hosts.sh. It sources container.sh
# (ct_boot, ct, ct_stop, …) and sets REPO, the repository's root.
#
# Results, TAP-like:
#   ok TEXT | not_ok TEXT        one `ok - …` / `not ok - …` line, counted
#   note                         stdin as `# …` diagnostics
#   check TEXT CMD...            one result line for the outcome of CMD
#   wait_for SECONDS CMD...      CMD every half second until it succeeds
# Before the run:
#   bot_fake_args "$@"           --bot BIN --fake FAKE_BIN (-h: the header)
#   preflight WHY [CMD[=PKG]...] root, systemd-nspawn and the usual tools
#   harness_init NAME [DIR]      WORK, STAGE, ARTIFACTS, NAME; the EXIT trap
#   start_guard SECONDS TEXT     bound the whole run
# The run:
#   pick_ports [PORT]            BOT_PORT, FAKE_PORT, BOT_URL, FAKE_URL
#   start_fake                   the fake GitHub on FAKE_PORT
#   stage_credentials [--newline], stage_fleet TEST WRITE_RATE WORKERS
#   boot_container               the stage is /e2e inside
#   install_and_start [--redeliver] [DROPIN...]
#   prop UNIT PROPERTY, now, running_workers, workers_are "1 2 …"
#   send ARGS..., sent_ok SENT_JSON, logged_once PREFIX SENT_JSON SINCE [ARGS]
#
# The EXIT trap (harness_cleanup) stops the guard; calls the script's
# before_teardown, when it has one (its own background work, mounts); when
# the run failed (or KEEP_ARTIFACTS is set) and a container is up, its
# save_artifacts (save_journal, save_files); stops every container and the
# fake GitHub; calls the script's after_teardown, when it has one (what the
# containers used until the end: a database, a load balancer); keeps the
# artifacts of a failed run in ARTIFACTS and deletes the
# rest; prints `# finished in N s` when REPORT_DURATION is set, then
# `N passed, M failed`; exits non-zero on any failure.

HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HARNESS_DIR/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=container.sh
source "$HARNESS_DIR/container.sh"

# The traffic and bookkeeping helper (send, deliveries, seed, check-runs,
# wait-http).
WEBHOOKS=(python3 "$HARNESS_DIR/webhooks.py")

# --- results -----------------------------------------------------------------

ok() { echo "ok - $*"; PASSED=$((PASSED + 1)); }
not_ok() { echo "not ok - $*"; FAILED=$((FAILED + 1)); }
note() { sed 's/^/# /'; }
# check DESCRIPTION CMD...: one line for the outcome of CMD.
check() {
    local description=$1
    shift
    if "$@"; then ok "$description"; else not_ok "$description"; fi
}
# wait_for SECONDS CMD...: run CMD every half second until it succeeds.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# --- before the run ----------------------------------------------------------

# The script's header comment (from line 2 to the first empty line).
show_help() { sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; }

# bot_fake_args "$@": the options of e2e.sh and chaos.sh; BOT and FAKE become
# absolute paths of executables.
bot_fake_args() {
    BOT=""
    FAKE=""
    while (($#)); do
        case $1 in
            --bot) BOT=$2; shift 2 ;;
            --fake) FAKE=$2; shift 2 ;;
            -h | --help) show_help; exit 0 ;;
            *) echo "unknown argument: $1" >&2; exit 2 ;;
        esac
    done
    if [[ -z $BOT || -z $FAKE ]]; then
        echo "usage: $0 --bot BIN --fake FAKE_BIN" >&2
        exit 2
    fi
    BOT=$(realpath "$BOT") && FAKE=$(realpath "$FAKE") || exit 2
    [[ -x $BOT && -x $FAKE ]] || { echo "not executable: $BOT or $FAKE" >&2; exit 2; }
}

# preflight WHY [CMD[=PACKAGE]...]: exit 2 unless run as root (WHY: what
# needs root); install systemd-container (systemd-nspawn) and each PACKAGE
# whose CMD is missing; exit 2 if nsenter, curl, python3, mountpoint or a CMD
# is missing.
preflight() {
    local why=$1 tool need=() wanted=()
    shift
    if ((EUID != 0)); then
        echo "must run as root ($why)" >&2
        exit 2
    fi
    for tool in systemd-nspawn=systemd-container "$@"; do
        [[ $tool == *=* ]] || continue
        command -v "${tool%%=*}" >/dev/null && continue
        need+=("${tool#*=}")
        if [[ ${tool%%=*} == "${tool#*=}" ]]; then wanted+=("${tool#*=}"); else wanted+=("${tool#*=} (${tool%%=*})"); fi
    done
    if ((${#need[@]})); then
        echo "# installing ${wanted[*]}"
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"; } >/dev/null || exit 2
    fi
    for tool in nsenter curl python3 mountpoint "${@%%=*}"; do
        command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
    done
}

# harness_init NAME [ARTIFACTS_DIR]: a work directory
# /tmp/task-list-bot-NAME.XXXXXX holding the stage (STAGE, /e2e in the
# container); ARTIFACTS (default: WORK/artifacts); the container's NAME; the
# counters; harness_cleanup on exit, `# interrupted` and exit 130 on INT/TERM.
harness_init() {
    WORK=$(mktemp -d "/tmp/task-list-bot-$1.XXXXXX")
    ARTIFACTS=${2:-$WORK/artifacts}
    STAGE=$WORK/stage
    mkdir -p "$ARTIFACTS" "$STAGE"
    NAME=task-list-bot-$1-$$
    PASSED=0
    FAILED=0
    FAKE_PID=""
    GUARD_PID=""
    KEEP_ARTIFACTS=""    # set: keep them even when every check passes
    REPORT_DURATION=""   # set: `# finished in N s` before the summary
    trap harness_cleanup EXIT
    trap 'echo "# interrupted"; exit 130' INT TERM
}

# start_guard SECONDS TEXT: the whole run is bounded: after SECONDS the guard
# prints `# TEXT` and interrupts the run (TERM), a step that hangs included.
start_guard() {
    (
        end=$((SECONDS + $1))
        while ((SECONDS < end)); do sleep 2; done
        echo "# $2"
        kill -TERM $$
    ) &
    GUARD_PID=$!
}

# run_logged OUT CMD...: CMD in the background, waited for, so that the
# guard's TERM interrupts it (bash runs traps only between commands); the
# teardown stops it.
CHILD_PID=""
run_logged() {
    local out=$1 rc
    shift
    "$@" >"$out" 2>&1 &
    CHILD_PID=$!
    wait "$CHILD_PID"
    rc=$?
    CHILD_PID=""
    return "$rc"
}

harness_cleanup() {
    local rc=$? keep=0
    trap - EXIT INT TERM
    [[ -n $GUARD_PID ]] && kill "$GUARD_PID" 2>/dev/null
    [[ -n $CHILD_PID ]] && kill "$CHILD_PID" 2>/dev/null
    if declare -F before_teardown >/dev/null; then before_teardown; fi
    if ((FAILED > 0 || rc != 0)) || [[ -n $KEEP_ARTIFACTS ]]; then keep=1; fi
    if ((${#CT_NAMES[@]} > 0 && keep)) && declare -F save_artifacts >/dev/null; then
        save_artifacts
    fi
    ct_stop_all
    if [[ -n $FAKE_PID ]]; then
        kill "$FAKE_PID" 2>/dev/null
        wait "$FAKE_PID" 2>/dev/null
    fi
    if declare -F after_teardown >/dev/null; then after_teardown; fi
    if ((keep)) && [[ -s $WORK/fake.log ]]; then
        cp "$WORK/fake.log" "$ARTIFACTS/"
        echo "# last lines of the fake GitHub's log:"
        tail -n 20 "$WORK/fake.log" | note
    fi
    [[ -n $REPORT_DURATION ]] && echo "# finished in $SECONDS s"
    if ((keep)); then
        echo "# artifacts kept in $ARTIFACTS"
        [[ $ARTIFACTS == "$WORK"/* ]] && find "$WORK" -mindepth 1 -maxdepth 1 ! -name artifacts -exec rm -rf {} +
    else
        rm -rf "$WORK"
    fi
    echo "$PASSED passed, $FAILED failed"
    if ((FAILED > 0 && rc == 0)); then rc=1; fi
    exit "$rc"
}

# For save_artifacts. save_journal LINES UNIT...: the container's journal
# into ARTIFACTS/journal.txt, the UNITs' as JSON into journal-bot.json, and
# their last LINES lines as diagnostics.
save_journal() {
    local lines=$1 unit units=()
    shift
    for unit in "$@"; do units+=(-u "$unit"); done
    ct journalctl -b --no-pager -o short-precise >"$ARTIFACTS/journal.txt" 2>&1
    ct journalctl -b --no-pager -o json "${units[@]}" >"$ARTIFACTS/journal-bot.json" 2>&1
    echo "# last lines of the workers' journal (all of it in $ARTIFACTS/journal.txt):"
    ct journalctl -b --no-pager -o short-precise "${units[@]}" -n "$lines" | note
}
# save_files FILE...: the FILEs that are not empty into ARTIFACTS.
save_files() {
    local f
    for f in "$@"; do
        if [[ -s $f ]]; then cp "$f" "$ARTIFACTS/"; fi
    done
}

# --- the fake GitHub and the container ---------------------------------------

port_free() {
    python3 -c 'import socket,sys; s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# pick_ports [PORT]: the bot's port (PORT when it is free on this host, else
# a free one) and another free one for the fake GitHub, as BOT_PORT,
# FAKE_PORT, BOT_URL and FAKE_URL.
# shellcheck disable=SC2120 # the argument is optional
pick_ports() {
    local port=${1:-}
    if [[ -n $port ]] && port_free "$port"; then
        BOT_PORT=$port
    else
        [[ -n $port ]] && echo "# port $port is taken on this host: the bot listens on a free port instead"
        BOT_PORT=$(free_port)
    fi
    FAKE_PORT=$(free_port)
    while [[ $FAKE_PORT == "$BOT_PORT" ]]; do FAKE_PORT=$(free_port); done
    BOT_URL=http://127.0.0.1:$BOT_PORT
    FAKE_URL=http://127.0.0.1:$FAKE_PORT
}

# start_fake: the fake GitHub (FAKE) on FAKE_PORT for App 1 with the test
# key, its log in WORK/fake.log; `not ok` and exit if it does not answer.
start_fake() {
    start_waited FAKE_PID "the fake GitHub" "$WORK/fake.log" "$FAKE_URL/_fake/health" 20 \
        "$FAKE" --listen "127.0.0.1:$FAKE_PORT" --app-id 1 \
        --public-key "$REPO/tests/data/test-app-key.pub.pem"
    echo "# fake GitHub on $FAKE_URL (pid $FAKE_PID)"
}

# start_waited PID_VAR WHAT LOG URL TIMEOUT COMMAND...: runs COMMAND in the
# background, its output in LOG, its pid in the variable PID_VAR at once (so
# that the cleanup stops it whatever happens next), and waits up to TIMEOUT
# seconds for URL to answer; if it does not, shows LOG and ends the run with
# `not ok - start WHAT`.
start_waited() {
    local pid_var=$1 what=$2 log=$3 url=$4 timeout=$5
    shift 5
    "$@" >"$log" 2>&1 &
    printf -v "$pid_var" '%s' "$!"
    if ! "${WEBHOOKS[@]}" wait-http --url "$url" --timeout "$timeout"; then
        note <"$log"
        not_ok "start $what"
        exit 1
    fi
}

# stage_credentials [--newline]: the App's private key and a new webhook
# secret into the stage. SECRET_FILE is the bare secret, for the sender;
# with --newline the credential ends in a newline, as an administrator's
# would (the bot drops it), and SECRET_FILE is a copy without it.
# shellcheck disable=SC2120 # the argument is optional
stage_credentials() {
    local secret
    secret=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
    cp "$REPO/tests/data/test-app-key.pem" "$STAGE/private-key.pem"
    if [[ ${1:-} == --newline ]]; then
        printf '%s\n' "$secret" >"$STAGE/webhook-secret"
        SECRET_FILE=$WORK/sender-secret
        printf '%s' "$secret" >"$SECRET_FILE"
    else
        SECRET_FILE=$STAGE/webhook-secret
        printf '%s' "$secret" >"$SECRET_FILE"
    fi
}

# stage_fleet TEST WRITE_RATE WORKERS: the binary (BOT), bot.socket,
# bot@.service, bot.target, the credentials and /etc/default/task-list-bot
# (for TEST: the fake GitHub, WRITE_RATE, WEB_CONCURRENCY=WORKERS, BOT_PORT)
# into the stage, for install_and_start.
stage_fleet() {
    cp "$BOT" "$STAGE/task-list-bot"
    cp "$REPO/systemd/bot.socket" "$REPO/systemd/bot@.service" "$REPO/systemd/bot.target" "$STAGE/"
    stage_credentials
    cat >"$STAGE/task-list-bot.default" <<EOF
# /etc/default/task-list-bot for $1
APP_ID=1
GHE_HOST=127.0.0.1:$FAKE_PORT
GHE_PROTOCOL=http
LOG_LEVEL=info
WRITE_RATE=$2
DRAIN_TIMEOUT=20
WEB_CONCURRENCY=$3
HOST=127.0.0.1
PORT=$BOT_PORT
EOF
}

# boot_container: ct_boot with the stage as /e2e and the console in
# WORK/console.log; when it fails, the jobs still queued and the console's
# last lines as diagnostics, `not ok` and exit.
boot_container() {
    chmod -R a+rX "$STAGE"
    ct_boot "$NAME" "$STAGE" "$WORK/console.log" && return 0
    if [[ -n $CT_PID ]]; then
        echo "# jobs still queued in the container:"
        timeout 20 nsenter -t "$CT_PID" -m -u -i -n -p -- systemctl list-jobs --no-pager 2>&1 | head -n 20 | note
    fi
    tail -n 30 "$WORK/console.log" | note
    cp "$WORK/console.log" "$ARTIFACTS/" 2>/dev/null
    not_ok "boot systemd in a container"
    exit 1
}

# install_and_start [--redeliver] [DROPIN...]: install what stage_fleet
# staged in the container: the binary, the units (and bot-redeliver.service,
# staged by the caller, with --redeliver), the generator link, the
# credentials, /etc/default/task-list-bot, and the drop-ins DROPIN (file
# names in the stage) for bot@.service in /run; enable bot.socket and
# bot.target and start bot.target. `not ok` and exit when that fails.
# shellcheck disable=SC2120 # the argument is optional
install_and_start() {
    local redeliver=no
    if [[ ${1:-} == --redeliver ]]; then redeliver=yes; shift; fi
    # shellcheck disable=SC2016 # a script for the container's sh
    if ! ct sh -euc '
        redeliver=$1
        shift
        install -m 0755 /e2e/task-list-bot /usr/bin/task-list-bot
        install -m 0644 /e2e/bot.socket /e2e/bot@.service /e2e/bot.target /usr/lib/systemd/system/
        if [ "$redeliver" = yes ]; then
            install -m 0644 /e2e/bot-redeliver.service /usr/lib/systemd/system/
        fi
        ln -sf /usr/bin/task-list-bot /usr/lib/systemd/system-generators/task-list-bot-generator
        install -d -m 0755 /etc/task-list-bot
        install -m 0600 /e2e/private-key.pem /etc/task-list-bot/private-key.pem
        install -m 0600 /e2e/webhook-secret /etc/task-list-bot/webhook-secret
        install -m 0644 /e2e/task-list-bot.default /etc/default/task-list-bot
        for dropin in "$@"; do
            install -d -m 0755 /run/systemd/system/bot@.service.d
            install -m 0644 "/e2e/$dropin" "/run/systemd/system/bot@.service.d/$dropin"
        done
        systemctl daemon-reload
        systemctl enable --quiet bot.socket bot.target
        systemctl start bot.target
    ' sh "$redeliver" "$@" 2>&1 | note; then
        not_ok "install the units and start bot.target"
        exit 1
    fi
}

# --- in the container --------------------------------------------------------

prop() { ct systemctl show -p "$2" --value "$1"; }
now() { date +%s; }
# The running bot@ instances, as "1 2 3 4".
running_workers() {
    ct systemctl list-units 'bot@*.service' --state=active --no-legend --plain |
        sed -n 's/^bot@\([0-9]*\)\.service .*/\1/p' | sort -n | tr '\n' ' ' | sed 's/ $//'
}
workers_are() { [[ $(running_workers) == "$1" ]]; }

# --- webhooks ----------------------------------------------------------------

# send ARGS...: webhooks.py send, to the bot, signed with SECRET_FILE.
send() { "${WEBHOOKS[@]}" send --url "$BOT_URL/" --secret-file "$SECRET_FILE" "$@"; }
# sent_ok SENT_JSON: every delivery of a send was accepted (and there was one).
sent_ok() { python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); sys.exit(0 if d["failed"] == 0 and d["ok"] > 0 else 1)' "$1"; }
# logged_once PREFIX SENT_JSON SINCE [ARGS...]: every delivery accepted in
# SENT_JSON is logged by a worker ("Request received" with DELIVERY_ID)
# exactly once since SINCE (seconds since the epoch); ARGS go to
# webhooks.py deliveries (--min-workers N, --out FILE).
logged_once() {
    local prefix=$1 sent=$2 since=$3 out
    shift 3
    for _ in $(seq 1 20); do
        ct journalctl --no-pager -o json --since "@$since" -u 'bot@*' >"$WORK/journal.json"
        if out=$("${WEBHOOKS[@]}" deliveries --journal "$WORK/journal.json" --sent "$sent" --prefix "$prefix" "$@"); then
            echo "$out" | note
            return 0
        fi
        sleep 0.5
    done
    echo "$out" | note
    return 1
}
