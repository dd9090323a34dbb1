#!/usr/bin/env bash
# End-to-end test of task-list-bot under a real systemd.
#
#   cargo build --release --features fault-injection --bins --examples
#   tests/systemd/e2e.sh --bot target/release/task-list-bot \
#                        --fake target/release/examples/fake_github
#
# Boots systemd in a throw-away container (container.sh), installs the binary,
# the units of systemd/, the generator link, /etc/default/task-list-bot and
# the credentials, runs the fake GitHub on the host (the container shares the
# host's network) and checks what only systemd can show: the units verify and
# are hardened, WEB_CONCURRENCY workers share one socket, deliveries are spread
# and processed once, the per-worker write rate adds up, crashed and hung
# workers come back, a broken worker does not take the socket down, stopping
# leaves queued writes to the next worker, scaling through the settings file,
# socket activation, each worker's own metrics endpoint (METRICS_PORT + N),
# and a hostile sender (thousands of stalled connections
# and stalled uploads, tests/systemd/attack.py) that neither delays a signed
# delivery nor takes the worker down or slows its stop.
#
# Prints one `ok - …` / `not ok - …` line per check, `# …` diagnostics, and
# `N passed, M failed` last; exits non-zero on any failure. Needs root,
# systemd-nspawn (package systemd-container, installed when missing), nsenter,
# curl and python3. About 70 s; everything is bounded by timeouts and the
# whole run by E2E_TIMEOUT seconds (default 720). On failure the container's
# journal is kept in E2E_ARTIFACTS (default: a directory under /tmp, printed).
#
# Sources harness.sh (results, the fake GitHub, the container, installing the
# fleet, sending webhooks through webhooks.py, cleanup).

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=harness.sh
source "$HERE/harness.sh"

bot_fake_args "$@"
preflight "mounts, systemd-nspawn"
# The watchdog check injects TASK_LIST_BOT_FAULT, compiled in only with the
# fault-injection feature (never into the package).
if ! grep -q TASK_LIST_BOT_FAULT "$BOT"; then
    echo "$BOT was built without the fault hook: cargo build --release --features fault-injection --bins --examples" >&2
    exit 2
fi

SENDER_PID=""   # background traffic of the kill -9 check
harness_init e2e "${E2E_ARTIFACTS:-}"
KEEP_ARTIFACTS=${E2E_ARTIFACTS:-}   # asked for: kept even when all checks pass
REPORT_DURATION=1
trap 'not_ok "the run was interrupted (a signal, or E2E_TIMEOUT)"; exit 130' INT TERM
start_guard "${E2E_TIMEOUT:-720}" "E2E_TIMEOUT (${E2E_TIMEOUT:-720} s) reached"

# Called by the harness's EXIT trap.
before_teardown() {
    [[ -n $SENDER_PID ]] && kill "$SENDER_PID" 2>/dev/null
    [[ -n ${ATTACKER_PID:-} ]] && kill "$ATTACKER_PID" 2>/dev/null
    return 0
}
save_artifacts() {
    save_journal 80 'bot@*' bot.socket
    save_files "$WORK/console.log"
}

# Predicates for wait_for.
state_is() { [[ $(prop "$1" ActiveState) == "$2" ]]; }
restarted_since() { state_is "$1" active && (($(prop "$1" NRestarts) > $2)); }
restarts_at_least() { (($(prop "$1" NRestarts) >= $2)); }
journal_has() { ct journalctl --no-pager -o cat -u "$1" --since "@$2" | grep -qF "$3"; }

# --- setup -------------------------------------------------------------------

pick_ports
start_fake
stage_fleet "the end-to-end test" 1 4
# Metrics on: worker N serves METRICS_PORT+N, so the next 8 ports must be
# free too (the scaling check runs up to 6 workers).
METRICS_PORT=$(python3 -c '
import socket
for base in range(20000, 60000, 10):
    try:
        held = []
        for port in range(base + 1, base + 9):
            s = socket.socket(); s.bind(("127.0.0.1", port)); held.append(s)
        print(base); break
    except OSError:
        pass')
echo "METRICS_PORT=$METRICS_PORT" >>"$STAGE/task-list-bot.default"
boot_container
install_and_start

# --- helpers for the checks --------------------------------------------------

all_stopped() { [[ -z $(running_workers) ]] && ! ct systemctl list-units 'bot@*.service' --state=deactivating,activating --no-legend --plain | grep -q .; }
set_workers() { ct sed -i "s/^WEB_CONCURRENCY=.*/WEB_CONCURRENCY=$1/" /etc/default/task-list-bot; }

# --- 1. the units ------------------------------------------------------------

verify_units() {
    local out
    out=$(ct sh -c 'cd /usr/lib/systemd/system && systemd-analyze verify bot.socket bot.target bot@.service bot@1.service' 2>&1)
    local rc=$?
    [[ -n $out ]] && echo "$out" | note
    [[ $rc == 0 && -z $out ]]
}
check "systemd-analyze verify is clean for bot.socket, bot.target, bot@.service" verify_units

security_score() {
    local out score
    out=$(ct systemd-analyze security --no-pager bot@1.service 2>&1)
    echo "$out" | note
    score=$(echo "$out" | sed -n 's/.*Overall exposure level for bot@1.service: \([0-9.]*\).*/\1/p')
    echo "security score of bot@1.service: ${score:-none} (at most 2.0 required)" | note
    [[ -n $score ]] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'
}
check "systemd-analyze security bot@1.service scores 2.0 or lower" security_score

# --- 2. the fleet ------------------------------------------------------------

four_ready() {
    wait_for 30 workers_are "1 2 3 4" || { echo "running: $(running_workers)" | note; return 1; }
    local i state
    for i in 1 2 3 4; do
        # Type=notify: "active (running)" only after READY=1.
        state=$(ct systemctl show -p Type -p ActiveState -p SubState -p StatusText "bot@$i.service" | tr '\n' ' ')
        echo "bot@$i: $state" | note
        [[ $state == *"Type=notify"* && $state == *"ActiveState=active"* && $state == *"SubState=running"* ]] || return 1
    done
    local links
    links=$(ct ls /run/systemd/generator/bot.target.wants | tr '\n' ' ')
    echo "generator links: $links" | note
    [[ $links == "bot@1.service bot@2.service bot@3.service bot@4.service " ]]
}
check "4 workers active and READY (WEB_CONCURRENCY=4 through the generator)" four_ready

socket_follows_config() {
    local listen
    listen=$(prop bot.socket Listen)
    echo "bot.socket Listen=$listen" | note
    [[ $listen == "127.0.0.1:$BOT_PORT (Stream)" ]]
}
check "bot.socket listens on HOST:PORT from /etc/default/task-list-bot" socket_follows_config

shared_state() {
    # DynamicUser=yes with one User= name: every instance runs as the same
    # UID and sees the same StateDirectory.
    local i pid uids=() owner
    for i in 1 2 3 4; do
        pid=$(prop "bot@$i.service" MainPID)
        uids+=("$(ct stat -c %u "/proc/$pid")")
    done
    owner=$(ct stat -c '%u %a %N' /var/lib/private/task-list-bot /var/lib/task-list-bot | tr '\n' ' ')
    echo "worker UIDs: ${uids[*]}; state directory: $owner" | note
    [[ ${uids[0]} =~ ^[0-9]+$ && ${uids[0]} != 0 ]] || return 1
    for i in 1 2 3; do [[ ${uids[$i]} == "${uids[0]}" ]] || return 1; done
    [[ $owner == "${uids[0]} 700 '/var/lib/private/task-list-bot'"* && $owner == *"'/var/lib/task-list-bot' -> 'private/task-list-bot'"* ]]
}
check "all workers run as one dynamic user and share /var/lib/task-list-bot" shared_state

status_line() {
    local line
    # (stderr: in the container systemctl cannot always list the cgroup.)
    line=$(ct systemctl status --no-pager bot@2.service 2>/dev/null | grep -m1 '^ *Status: ')
    echo "${line:-no Status: line}" | note
    [[ -n $line ]]
}
check "systemctl status bot@2 shows the worker's STATUS= line" status_line

ping_health() {
    local pong health
    pong=$(curl -sS -m 10 "$BOT_URL/ping")
    health=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' "$BOT_URL/health")
    echo "GET /ping: $pong, GET /health: $health" | note
    [[ $pong == PONG && $health == 200 ]]
}
check "GET /ping answers PONG and GET /health 200 through the socket" ping_health

metrics_per_worker() {
    local i port body status
    for i in 1 2 3 4; do
        port=$((METRICS_PORT + i))
        body=$(curl -sS -m 10 "http://127.0.0.1:$port/metrics") || return 1
        echo "127.0.0.1:$port: $(grep -m1 '^task_list_bot_worker_info' <<<"$body")" | note
        grep -q "^task_list_bot_worker_info{worker=\"$i\"," <<<"$body" || return 1
    done
    # Loopback only, and not through the shared webhook socket.
    ct ss -ltnH "sport = :$((METRICS_PORT + 1))" | note
    [[ $(ct ss -ltnH "sport = :$((METRICS_PORT + 1))" | awk '{print $4}') == "127.0.0.1:$((METRICS_PORT + 1))" ]] || return 1
    status=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' "$BOT_URL/metrics")
    echo "GET /metrics on the webhook port: $status" | note
    [[ $status == 404 ]]
}
check "each worker serves its own /metrics on 127.0.0.1:METRICS_PORT+N, none on the webhook port" metrics_per_worker

# --- 3. deliveries -----------------------------------------------------------

spread_once() {
    local since
    since=$(now)
    # Paced: an unpaced burst mostly lands on one worker (every idle worker
    # is woken, the one that is already running wins accept()).
    send --kind ping --count 200 --rate 25 --concurrency 8 --id-prefix spread --out "$WORK/spread.json" | note
    sent_ok "$WORK/spread.json" || return 1
    logged_once spread "$WORK/spread.json" "$since" --min-workers 4 --out "$WORK/spread.deliveries.json"
}
check "200 signed deliveries: all accepted, each logged once, spread over all 4 workers" spread_once

burst_rate() {
    "${WEBHOOKS[@]}" seed --fake "$FAKE_URL" --installation 4201 --repo e2e/burst --prs 20 | note || return 1
    send --kind pr --installation 4201 --repo e2e/burst --count 20 --concurrency 20 \
        --id-prefix burst --out "$WORK/burst.json" | note
    sent_ok "$WORK/burst.json" || return 1
    "${WEBHOOKS[@]}" check-runs --fake "$FAKE_URL" --installation 4201 --repo e2e/burst --prs 20 \
        --timeout 40 --out "$WORK/burst.rate.json" | note || return 1
    local rate
    rate=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("rate_per_s", 0))' "$WORK/burst.rate.json")
    echo "burst of 20 writes for one installation: $rate check runs/s (4 workers x WRITE_RATE=1; one worker alone: 1/s)" | note
    awk -v r="$rate" 'BEGIN { exit !(r > 2.0) }'
}
check "a burst of 20 writes for one installation reaches GitHub at about 4/s, not 1/s" burst_rate

# --- 4. failures -------------------------------------------------------------

kill_worker() {
    local since before pid after
    since=$(now)
    before=$(prop bot@2.service NRestarts)
    send --kind ping --duration 12 --rate 20 --concurrency 4 --id-prefix kill \
        --out "$WORK/kill.json" >"$WORK/kill.out" &
    SENDER_PID=$!
    sleep 3
    pid=$(prop bot@2.service MainPID)
    echo "kill -9 bot@2 (pid $pid in the container) during traffic; NRestarts was $before" | note
    # MainPID=0 means no process: `kill -9 0` would hit this script's group.
    if [[ $pid =~ ^[1-9][0-9]*$ ]]; then
        ct kill -9 "$pid"
    else
        echo "bot@2 has no main process" | note
    fi
    wait "$SENDER_PID"
    SENDER_PID=""
    note <"$WORK/kill.out"
    local okay=0
    sent_ok "$WORK/kill.json" || okay=1
    wait_for 20 restarted_since bot@2.service "$before" || {
        echo "bot@2: $(prop bot@2.service ActiveState), NRestarts=$(prop bot@2.service NRestarts)" | note
        okay=1
    }
    after=$(prop bot@2.service NRestarts)
    echo "bot@2 active again, NRestarts $before -> $after" | note
    logged_once kill "$WORK/kill.json" "$since" --min-workers 0 --out "$WORK/kill.deliveries.json" || okay=1
    return $okay
}
check "kill -9 of a worker under traffic: no delivery refused or failed, systemd restarts it" kill_worker

broken_worker() {
    local okay=0
    ct sh -c 'mkdir -p /run/systemd/system/bot@3.service.d && printf "[Service]\nLoadCredential=broken:/etc/task-list-bot/missing-on-purpose\n" >/run/systemd/system/bot@3.service.d/99-e2e-broken.conf && systemctl daemon-reload'
    ct systemctl restart bot@3.service 2>/dev/null && { echo "bot@3 started despite the missing credential" | note; okay=1; }
    wait_for 15 state_is bot@3.service failed
    sleep 5 # RestartSec=2s: a restart would show by now
    local state
    state=$(ct systemctl show -p ActiveState -p Result -p ExecMainStatus -p NRestarts bot@3.service | tr '\n' ' ')
    echo "bot@3: $state" | note
    [[ $state == *"ActiveState=failed"* && $state == *"ExecMainStatus=243"* && $state == *"NRestarts=0"* ]] || okay=1
    local socket
    socket=$(ct systemctl show -p ActiveState -p Result bot.socket | tr '\n' ' ')
    echo "bot.socket: $socket; running workers: $(running_workers)" | note
    [[ $socket == *"ActiveState=active"* && $socket == *"Result=success"* ]] || okay=1
    workers_are "1 2 4" || okay=1
    send --kind ping --count 40 --concurrency 4 --id-prefix broken --out "$WORK/broken.json" | note
    sent_ok "$WORK/broken.json" || okay=1
    return $okay
}
check "a worker missing its credential fails once (243/CREDENTIALS, no restart loop); the others serve" broken_worker

crash_loop() {
    local okay=0 n
    ct sh -c 'printf "[Service]\nExecStartPre=/bin/false\n" >/run/systemd/system/bot@3.service.d/99-e2e-broken.conf && systemctl daemon-reload && systemctl reset-failed bot@3.service'
    ct systemctl start --no-block bot@3.service
    # With the old StartLimitBurst=5 the 6th start would hit the start limit,
    # which systemd 252 propagates to bot.socket (it closes the socket).
    wait_for 25 restarts_at_least bot@3.service 6 || okay=1
    n=$(prop bot@3.service NRestarts)
    local socket
    socket=$(ct systemctl show -p ActiveState -p SubState -p Result bot.socket | tr '\n' ' ')
    echo "bot@3 restarted $n times, Result=$(prop bot@3.service Result); bot.socket: $socket" | note
    [[ $socket == *"ActiveState=active"* && $socket == *"Result=success"* ]] || okay=1
    send --kind ping --count 40 --concurrency 4 --id-prefix crashloop --out "$WORK/crashloop.json" | note
    sent_ok "$WORK/crashloop.json" || okay=1
    # Repair: drop-in gone, worker back.
    ct sh -c 'rm -rf /run/systemd/system/bot@3.service.d && systemctl daemon-reload && systemctl reset-failed bot@3.service; systemctl restart bot@3.service'
    wait_for 20 workers_are "1 2 3 4" || { echo "after repair: $(running_workers)" | note; okay=1; }
    return $okay
}
check "a crash-looping worker is retried without end and never takes bot.socket down; repaired with reset-failed" crash_loop

watchdog() {
    local okay=0 since before
    since=$(now)
    ct sh -c 'mkdir -p /run/systemd/system/bot@4.service.d && printf "[Service]\nEnvironment=TASK_LIST_BOT_FAULT=stall-runtime-after=3\n" >/run/systemd/system/bot@4.service.d/99-e2e-stall.conf && systemctl daemon-reload'
    ct systemctl restart bot@4.service || okay=1
    before=$(prop bot@4.service NRestarts)
    # 3 s until the stall, WatchdogSec=10s, RestartSec=2s.
    wait_for 40 journal_has bot@4.service "$since" "Failed with result 'watchdog'" || okay=1
    ct journalctl --no-pager -u bot@4.service --since "@$since" -o cat |
        grep -E "Watchdog timeout|SIGABRT|status=6/ABRT|Failed with result|Scheduled restart" | note
    ct journalctl --no-pager -u bot@4.service --since "@$since" -o cat | grep -qE 'SIGABRT|status=6/ABRT' || okay=1
    wait_for 15 restarted_since bot@4.service "$before" || okay=1
    echo "bot@4: $(prop bot@4.service ActiveState), NRestarts $before -> $(prop bot@4.service NRestarts)" | note
    ct sh -c 'rm -rf /run/systemd/system/bot@4.service.d && systemctl daemon-reload && systemctl restart bot@4.service'
    wait_for 20 workers_are "1 2 3 4" || okay=1
    return $okay
}
check "a worker whose runtime stalls is killed by the watchdog (SIGABRT, result watchdog) and restarted" watchdog

# --- 5. operations -----------------------------------------------------------

scale() {
    local okay=0
    set_workers 2
    ct sh -c 'systemctl daemon-reload && systemctl restart bot.target' || okay=1
    wait_for 40 workers_are "1 2" || okay=1
    echo "WEB_CONCURRENCY=2: running $(running_workers)" | note
    set_workers 6
    ct sh -c 'systemctl daemon-reload && systemctl restart bot.target' || okay=1
    wait_for 40 workers_are "1 2 3 4 5 6" || okay=1
    echo "WEB_CONCURRENCY=6: running $(running_workers)" | note
    send --kind ping --count 60 --concurrency 6 --id-prefix scale --out "$WORK/scale.json" | note
    sent_ok "$WORK/scale.json" || okay=1
    # A bad value: the generator reports it and falls back to 4, never 0.
    set_workers lots
    ct sh -c 'systemctl daemon-reload && systemctl restart bot.target' || okay=1
    wait_for 40 workers_are "1 2 3 4" || okay=1
    echo "WEB_CONCURRENCY=lots: running $(running_workers)" | note
    # No /dev/kmsg in the container: the generator's report goes to PID 1's
    # stderr, the container's console.
    local report
    report=$(grep -a -m1 -o 'task-list-bot-generator: .*WEB_CONCURRENCY="lots".*' "$WORK/console.log" | tr -d '\r')
    echo "generator: ${report:-no report on the console}" | note
    [[ -n $report ]] || okay=1
    set_workers 4
    ct systemctl daemon-reload || okay=1
    return $okay
}
check "scaling 4 -> 2 -> 6 through WEB_CONCURRENCY, daemon-reload and restart bot.target; a bad value means 4" scale

drain_on_stop() {
    local okay=0 t0
    "${WEBHOOKS[@]}" seed --fake "$FAKE_URL" --installation 4202 --repo e2e/drain --prs 16 | note || return 1
    send --kind pr --installation 4202 --repo e2e/drain --count 16 --concurrency 16 \
        --id-prefix drain --out "$WORK/drain.json" | note
    sent_ok "$WORK/drain.json" || okay=1
    t0=$SECONDS
    ct systemctl stop bot.target || okay=1
    # stop bot.target returns once the target is down; the workers drain on.
    wait_for 40 all_stopped || { echo "still running: $(running_workers)" | note; okay=1; }
    echo "all workers stopped $((SECONDS - t0)) s after systemctl stop bot.target" | note
    # A worker of the shared store stops claiming at once and finishes only
    # the claims it holds: what is left stays in the store for the next
    # worker (checked after socket activation below).
    if ((SECONDS - t0 > 10)); then
        echo "the stop took longer than the claims in hand need" | note
        okay=1
    fi
    local i state
    for i in 1 2 3 4; do
        state=$(ct systemctl show -p Result -p ExecMainCode -p ExecMainStatus "bot@$i.service" | tr '\n' ' ')
        echo "bot@$i: $state" | note
        # Exited by itself (code 1 = CLD_EXITED) with status 0: drained, not killed.
        [[ $state == *"Result=success"* && $state == *"ExecMainCode=1"* && $state == *"ExecMainStatus=0"* ]] || okay=1
    done
    return $okay
}
check "systemctl stop bot.target with writes queued: the workers finish their claims and exit 0 within 10 s" drain_on_stop

socket_activation() {
    local okay=0 pong
    all_stopped || { echo "workers still running: $(running_workers)" | note; okay=1; }
    echo "bot.socket: $(prop bot.socket ActiveState)/$(prop bot.socket SubState)" | note
    pong=$(curl -sS -m 30 "$BOT_URL/ping")
    echo "GET /ping with no worker running: ${pong:-no answer}" | note
    [[ $pong == PONG ]] || okay=1
    wait_for 10 workers_are "1" || okay=1
    echo "running after the connection: $(running_workers)" | note
    # What the stopped fleet left in the store is written now.
    "${WEBHOOKS[@]}" check-runs --fake "$FAKE_URL" --installation 4202 --repo e2e/drain --prs 16 \
        --timeout 30 --out "$WORK/drain.runs.json" | note || okay=1
    return $okay
}
check "a connection while no worker runs starts bot@1 (socket activation) and is answered; the writes left at the stop are made" socket_activation

# --- 6. a hostile sender -----------------------------------------------------

ATTACK=(python3 "$HERE/attack.py" --port)
ATTACKER_PID=""
# attack_start NAME: the attacker against bot@1 in the background (3000
# stalled connections, 64 stalled 25 MB uploads), waits until all are open.
attack_start() {
    rm -f "$WORK/$1.ready"
    "${ATTACK[@]}" "$BOT_PORT" --stalled 3000 --uploads 64 --hold 9 \
        --ready-file "$WORK/$1.ready" >"$WORK/$1.json" 2>&1 &
    ATTACKER_PID=$!
    wait_for 20 test -e "$WORK/$1.ready"
}
attack_end() {
    wait "$ATTACKER_PID"
    ATTACKER_PID=""
    note <"$WORK/$1.json"
}
rss_kib() { ct awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

hostile_sender() {
    local okay=0 pid restarts t0 took rss peak=0 i
    pid=$(prop bot@1.service MainPID)
    restarts=$(prop bot@1.service NRestarts)
    attack_start attack || { echo "the attacker did not get its connections open" | note; okay=1; }
    for i in 1 2 3; do
        t0=$(date +%s%3N)
        send --kind ping --count 1 --timeout 2 --id-prefix "attack-$i" --out "$WORK/attack-$i.json" >/dev/null
        took=$(($(date +%s%3N) - t0))
        rss=$(rss_kib "$pid")
        ((rss > peak)) && peak=$rss
        echo "a signed delivery during the attack: $(python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); print("ok" if d["ok"] == 1 else "FAILED")' "$WORK/attack-$i.json") in $took ms; RSS ${rss} KiB" | note
        sent_ok "$WORK/attack-$i.json" && ((took < 2000)) || okay=1
    done
    attack_end attack
    local max
    max=$(prop bot@1.service MemoryMax)
    echo "bot@1 peak RSS ${peak} KiB, MemoryMax=$max; MainPID $pid -> $(prop bot@1.service MainPID), NRestarts $restarts -> $(prop bot@1.service NRestarts)" | note
    [[ $max =~ ^[0-9]+$ ]] && ((peak > 0 && peak * 1024 < max)) || okay=1
    [[ $(prop bot@1.service MainPID) == "$pid" && $(prop bot@1.service NRestarts) == "$restarts" ]] || okay=1
    return $okay
}
check "3000 stalled connections and 64 stalled 25 MB uploads: signed deliveries answered 2xx within 2 s, RSS under MemoryMax, never killed" hostile_sender

stop_under_attack() {
    local okay=0 t0 took state
    attack_start attack-stop || okay=1
    t0=$(date +%s%3N)
    ct systemctl stop bot@1.service || okay=1
    took=$(($(date +%s%3N) - t0))
    state=$(ct systemctl show -p Result -p ExecMainCode -p ExecMainStatus bot@1.service | tr '\n' ' ')
    echo "systemctl stop bot@1 during the attack took $took ms: $state" | note
    attack_end attack-stop
    [[ $state == *"Result=success"* && $state == *"ExecMainCode=1"* && $state == *"ExecMainStatus=0"* ]] || okay=1
    ((took < 6000)) || okay=1
    return $okay
}
check "SIGTERM in the middle of the attack: the worker exits 0 within 6 s" stop_under_attack

# --- 7. the whole run --------------------------------------------------------

worker_errors() {
    # Everything the workers logged at priority err or worse since boot
    # (systemd's own messages about the faults injected above are not theirs).
    ct journalctl -b --no-pager -o short-precise SYSLOG_IDENTIFIER=task-list-bot -p err >"$WORK/errors.txt"
    if grep -v -e '^-- No entries --$' "$WORK/errors.txt" | grep -q .; then
        note <"$WORK/errors.txt"
        return 1
    fi
}
check "the workers logged no error during the whole run" worker_errors
