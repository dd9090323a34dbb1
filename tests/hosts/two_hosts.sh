#!/usr/bin/env bash
# Two hosts sharing one PostgreSQL pending set, behind HAProxy, each under a
# real systemd.
#
#   tests/hosts/two_hosts.sh --deb task-list-bot.deb \
#                            --fake target/release/examples/fake_github
#   tests/hosts/two_hosts.sh --build --fake target/release/examples/fake_github
#
# With --build, the package is made by packaging/build-deb.sh from the
# current tree (a release build without the fault hook).
#
# On this machine: the fake GitHub; a PostgreSQL server of its own (initdb
# and pg_ctl in a temporary directory, TCP on 127.0.0.1 with password
# authentication, the role and database of README "Several hosts"); two
# systemd machines booted side by side (tests/systemd/container.sh), both on
# this machine's network, each with the .deb installed by `dpkg -i`, its
# own PORT (bot.socket listens on 127.0.0.1:PORT, through the generator),
# WEB_CONCURRENCY=2, WRITE_RATE=1, FLEET_WRITE_RATE=3.5, the credentials and
# the database-url credential with README's drop-in; and HAProxy (a process
# of its own, own configuration file) in front of both: round robin, health
# check GET /health, retries on another host for refused connections, empty
# answers and 503. Every delivery goes through HAProxy. Then, judged on the
# fake GitHub's record of check runs (tests/hosts/two_hosts.py):
#  - burst: 108 pull requests of 3 installations at once drain at the
#    fleet's combined rate (per installation min(WRITE_RATE x 4 workers,
#    FLEET_WRITE_RATE) = 3.5/s: first to last write within 0.95-1.2 x the
#    ideal, faster than one host alone could), one check each, and the
#    hosts' journals show both received deliveries and wrote checks;
#  - race: quick successive edits and comments on the same 20 pull
#    requests, spread over both hosts, leave 0 stale final checks;
#  - kill: a burst of 60 pull requests, then edits; mid-way the PID 1 of
#    host 1's container gets SIGKILL (no clean stop): every pull request
#    still ends with the check of its final state, every delivery was
#    answered 2xx (HAProxy retries on host 2), and host 2 finishes every
#    claim the dead host held within the lease (10 s) + 5 s of the kill.
#
# Prints one `ok - …` / `not ok - …` line per check, `# …` diagnostics and
# `N passed, M failed` last; exits non-zero on any failure. Needs root,
# systemd-nspawn (package systemd-container), haproxy (both installed when
# missing), PostgreSQL's server binaries (package postgresql; initdb and
# pg_ctl from /usr/lib/postgresql/*/bin or PG_BIN_DIR), nsenter, curl,
# python3. About a minute; the whole run is bounded by TWO_HOSTS_TIMEOUT
# seconds (default 420). Everything it starts (containers, mounts, the
# database, HAProxy, the fake) is stopped and its temporary directories
# removed on success, failure and interruption; on failure the journals,
# logs and figures are kept in TWO_HOSTS_ARTIFACTS (default: a directory
# under /tmp, printed). TWO_HOSTS_SEED picks the race's plan (default:
# random, printed).
#
# Sources tests/systemd/harness.sh (results, the fake GitHub, containers,
# cleanup).

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR/../systemd source=harness.sh
source "$HERE/../systemd/harness.sh"

DEB=""
FAKE=""
BUILD=0
while (($#)); do
    case $1 in
        --deb) DEB=$2; shift 2 ;;
        --fake) FAKE=$2; shift 2 ;;
        --build) BUILD=1; shift ;;
        -h | --help) show_help; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
if [[ -z $FAKE ]] || { ((!BUILD)) && [[ -z $DEB ]]; }; then
    echo "usage: $0 --deb PACKAGE.deb --fake FAKE_BIN" >&2
    echo "       $0 --build --fake FAKE_BIN" >&2
    exit 2
fi
preflight "mounts, systemd-nspawn, a PostgreSQL server run as postgres" haproxy=haproxy dpkg-deb runuser
FAKE=$(realpath "$FAKE") || exit 2
[[ -x $FAKE ]] || { echo "not executable: $FAKE" >&2; exit 2; }
if ((!BUILD)); then
    DEB=$(realpath "$DEB") || exit 2
    [[ -f $DEB ]] || { echo "no such package: $DEB" >&2; exit 2; }
fi
PG_BIN=${PG_BIN_DIR:-$(find /usr/lib/postgresql -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1)}
if [[ ! -x $PG_BIN/initdb || ! -x $PG_BIN/pg_ctl ]]; then
    echo "PostgreSQL's server binaries are missing: apt-get install postgresql (or set PG_BIN_DIR)" >&2
    exit 2
fi
id postgres >/dev/null 2>&1 || { echo "no postgres user to run the server as (package postgresql)" >&2; exit 2; }

# The fleet of each host, and what the scenarios expect of it.
WORKERS=2            # per host
WRITE_RATE=1         # per worker and installation
FLEET_WRITE_RATE=3.5 # per installation, both hosts together
LEASE=10             # a dead worker's claims return after its lease (src/pending/postgres.rs)
SEED=${TWO_HOSTS_SEED:-$((RANDOM * 32768 + RANDOM))}

PY=(python3 "$HERE/two_hosts.py")
HAPROXY_PID=""
PG_DIR=""
harness_init twohosts "${TWO_HOSTS_ARTIFACTS:-}"
REPORT_DURATION=1
trap 'not_ok "the run was interrupted (a signal, or TWO_HOSTS_TIMEOUT)"; exit 130' INT TERM
start_guard "${TWO_HOSTS_TIMEOUT:-420}" "TWO_HOSTS_TIMEOUT (${TWO_HOSTS_TIMEOUT:-420} s) reached"
SINCE=$(now)
# Machine names, which are also the host names the workers record.
HOSTS=("" "$NAME-1" "$NAME-2")

save_artifacts() {
    local n
    for n in 1 2; do
        ct_use "${HOSTS[n]}" 2>/dev/null || continue
        ct journalctl -b --no-pager -o short-precise >"$ARTIFACTS/journal-host$n.txt" 2>&1
        echo "# last lines of host $n's workers (all of it in $ARTIFACTS/journal-host$n.txt):"
        ct journalctl -b --no-pager -o short-precise -u 'bot@*' -n 30 | note
    done
    save_files "$WORK"/*.out "$WORK"/*.json "$WORK"/haproxy.log "$WORK"/console-*.log
    [[ -n $PG_DIR ]] && save_files "$PG_DIR/log"
}
# Once the containers are gone: HAProxy and the database.
after_teardown() {
    if [[ -n $HAPROXY_PID ]]; then
        kill "$HAPROXY_PID" 2>/dev/null
        wait "$HAPROXY_PID" 2>/dev/null
    fi
    if [[ -n $PG_DIR ]]; then
        pg_as_owner pg_ctl -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1
        rm -rf "$PG_DIR"
    fi
}

# N distinct free ports on 127.0.0.1.
free_ports() {
    python3 -c '
import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))' "$1"
}
read -r FAKE_PORT FRONT_PORT STATS_PORT PG_PORT PORT1 PORT2 <<<"$(free_ports 6)"
PORTS=("" "$PORT1" "$PORT2")
FAKE_URL=http://127.0.0.1:$FAKE_PORT
FRONT_URL=http://127.0.0.1:$FRONT_PORT
STATS_URL="http://127.0.0.1:$STATS_PORT/;csv"
echo "# HAProxy on $FRONT_URL in front of host 1 (127.0.0.1:$PORT1) and host 2 (127.0.0.1:$PORT2);" \
    "PostgreSQL on 127.0.0.1:$PG_PORT; race seed $SEED (TWO_HOSTS_SEED=$SEED repeats it)"

# --- the package -------------------------------------------------------------

if ((BUILD)); then
    echo "# building the package with packaging/build-deb.sh"
    "$REPO/packaging/build-deb.sh" --output "$WORK/task-list-bot.deb" 2>&1 | tail -n 3 | note
    DEB=$WORK/task-list-bot.deb
    [[ -f $DEB ]] || { not_ok "build the package"; exit 1; }
fi
echo "# package: $(dpkg-deb -f "$DEB" Package) $(dpkg-deb -f "$DEB" Version) ($DEB)"

# --- PostgreSQL ----------------------------------------------------------------

# pg_as_owner PROGRAM ARGS...: one of the server's programs as postgres
# (PostgreSQL refuses to run as root), from a directory it may enter.
pg_as_owner() {
    local program=$1
    shift
    (cd "$PG_DIR" && runuser -u postgres -- "$PG_BIN/$program" "$@")
}
# pg_admin SQL: SQL as the server's superuser, over its Unix socket.
pg_admin() {
    "$PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U tlb_admin -d "${2:-task_list_bot}" -c "$1"
}

start_postgres() {
    PG_DIR=$(mktemp -d /tmp/tlb-twohosts-pg.XXXXXX) || return 1
    chown postgres: "$PG_DIR" && chmod 0700 "$PG_DIR" || return 1
    PG_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    pg_as_owner initdb -D "$PG_DIR/data" -U tlb_admin --auth-local=trust --auth-host=scram-sha-256 \
        --no-sync -E UTF8 >"$PG_DIR/initdb.log" 2>&1 || { note <"$PG_DIR/initdb.log"; return 1; }
    # Only TCP on loopback and the socket in PG_DIR; durability is not
    # what this test is about.
    pg_as_owner pg_ctl -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null || { note <"$PG_DIR/log"; return 1; }
    pg_admin "CREATE ROLE task_list_bot LOGIN PASSWORD '$PG_PASSWORD'" postgres &&
        pg_admin "CREATE DATABASE task_list_bot OWNER task_list_bot" postgres || return 1
    DATABASE_URL=postgres://task_list_bot:$PG_PASSWORD@127.0.0.1:$PG_PORT/task_list_bot
    PG_ADMIN="host=$PG_DIR port=$PG_PORT user=tlb_admin dbname=task_list_bot"
    # The hosts' way in: TCP and the password, nothing else.
    PGPASSWORD=$PG_PASSWORD "$PG_BIN/psql" -XAtq -d "$DATABASE_URL" -c 'SELECT 1' >/dev/null || return 1
    ! PGPASSWORD=wrong "$PG_BIN/psql" -XAtq -w -d "postgres://task_list_bot@127.0.0.1:$PG_PORT/task_list_bot" \
        -c 'SELECT 1' >/dev/null 2>&1
}
if ! start_postgres; then
    not_ok "start PostgreSQL on 127.0.0.1:$PG_PORT with password authentication"
    exit 1
fi
ok "PostgreSQL $("$PG_BIN/postgres" --version | awk '{ print $3 }') on 127.0.0.1:$PG_PORT: the bot's role and database, password authentication over TCP"

# --- the fake GitHub and HAProxy ---------------------------------------------

start_fake

cat >"$WORK/haproxy.cfg" <<EOF
# The two-hosts test's load balancer (README "Several hosts", with /health).
global
    maxconn 512

defaults
    mode http
    timeout connect 2s
    timeout client 15s
    timeout server 15s
    timeout check 2s

frontend github_webhooks
    bind 127.0.0.1:$FRONT_PORT
    default_backend task_list_bot

backend task_list_bot
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
    # A host that refuses, dies mid-request or answers 503 (its store out of
    # reach): the delivery is tried again on the other host.
    retry-on conn-failure empty-response 503
    retries 2
    option redispatch 1
    server host1 127.0.0.1:$PORT1 check
    server host2 127.0.0.1:$PORT2 check

listen stats
    bind 127.0.0.1:$STATS_PORT
    stats enable
    stats uri /
EOF
if ! haproxy -c -q -f "$WORK/haproxy.cfg" 2>&1 | note; then
    not_ok "HAProxy accepts its configuration"
    exit 1
fi
start_waited HAPROXY_PID HAProxy "$WORK/haproxy.log" "$STATS_URL" 10 \
    haproxy -db -f "$WORK/haproxy.cfg"
echo "# HAProxy (pid $HAPROXY_PID), statistics on $STATS_URL"

# --- two hosts -----------------------------------------------------------------

cp "$DEB" "$STAGE/task-list-bot.deb"
stage_credentials
printf '%s\n' "$DATABASE_URL" >"$STAGE/database-url"
# README "Several hosts": the credential is loaded by a drop-in.
printf '[Service]\nLoadCredential=database-url:/etc/task-list-bot/database-url\n' >"$STAGE/database.conf"
for n in 1 2; do
    cat >"$STAGE/host$n.default" <<EOF
# /etc/default/task-list-bot of host $n in the two-hosts test
APP_ID=1
GHE_HOST=127.0.0.1:$FAKE_PORT
GHE_PROTOCOL=http
LOG_LEVEL=info
WRITE_RATE=$WRITE_RATE
FLEET_WRITE_RATE=$FLEET_WRITE_RATE
WEB_CONCURRENCY=$WORKERS
HOST=127.0.0.1
PORT=${PORTS[n]}
EOF
done
chmod -R a+rX "$STAGE"

boot_hosts() {
    local n
    for n in 1 2; do
        ct_start "${HOSTS[n]}" "$STAGE" "$WORK/console-$n.log" || return 1
    done
    for n in 1 2; do
        ct_use "${HOSTS[n]}" && ct_wait_booted || return 1
    done
}
if ! boot_hosts; then
    tail -n 30 "$WORK"/console-*.log | note
    not_ok "boot two systemd machines side by side"
    exit 1
fi

# install_host N: the package, then README's configuration steps for a host
# of a fleet sharing PostgreSQL, then the fleet started.
install_host() {
    ct_use "${HOSTS[$1]}" || return 1
    # shellcheck disable=SC2016 # a script for the container's sh
    ct sh -euc '
        # The host name the workers record with their leases: the machine
        # name (systemd set the one of /etc/hostname, the same in both).
        hostname "$2"
        echo "$2" >/etc/hostname
        export DEBIAN_FRONTEND=noninteractive
        dpkg -i /e2e/task-list-bot.deb >/dev/null
        install -m 0600 /e2e/private-key.pem /etc/task-list-bot/private-key.pem
        install -m 0600 /e2e/webhook-secret /etc/task-list-bot/webhook-secret
        install -m 0600 /e2e/database-url /etc/task-list-bot/database-url
        install -m 0644 /e2e/host$1.default /etc/default/task-list-bot
        install -d -m 0755 /etc/systemd/system/bot@.service.d
        install -m 0644 /e2e/database.conf /etc/systemd/system/bot@.service.d/database.conf
        systemctl daemon-reload
        systemctl enable --quiet --now bot.target
    ' sh "$1" "${HOSTS[$1]}" >"$WORK/install-$1.log" 2>&1
}
install_host 1 &
install1=$!
install_host 2 &
install2=$!
wait "$install1"
rc1=$?
wait "$install2"
rc2=$?
for n in 1 2; do note <"$WORK/install-$n.log"; done
if ((rc1 || rc2)); then
    not_ok "install the package on both hosts and start their fleets (exit $rc1, $rc2)"
    exit 1
fi

host_ready() {
    ct_use "${HOSTS[$1]}" || return 1
    wait_for 30 workers_are "$(seq -s ' ' 1 "$WORKERS")" || { echo "host $1 runs bot@ $(running_workers)" | note; return 1; }
    "${WEBHOOKS[@]}" wait-http --url "http://127.0.0.1:${PORTS[$1]}/health" --timeout 20 || return 1
    echo "host $1 (${HOSTS[$1]}): $(ct dpkg-query -W task-list-bot 2>/dev/null | tr '\t' ' '); bot@ $(running_workers) running; bot.socket $(prop bot.socket Listen)" | note
    [[ $(prop bot.socket Listen) == "127.0.0.1:${PORTS[$1]} (Stream)" ]]
}
# Every worker of both hosts holds a lease in the shared database.
leases_held() {
    local leases
    leases=$(pg_admin "SELECT host || ' ' || count(*) FROM owners WHERE lease_until > now() GROUP BY host ORDER BY host" 2>&1)
    [[ $leases == "${HOSTS[1]} $WORKERS"$'\n'"${HOSTS[2]} $WORKERS" ]] && return 0
    echo "live leases per host: $leases" | note
    return 1
}
fleets_ready() {
    host_ready 1 && host_ready 2 && wait_for 20 leases_held &&
        "${PY[@]}" haproxy --stats "$STATS_URL" --backend task_list_bot --server host1=UP --server host2=UP --timeout 20 | note
}
if ! fleets_ready; then
    not_ok "both hosts run $WORKERS workers on their own port, with leases in the shared database, and HAProxy sees both up"
    exit 1
fi
ok "both hosts run $WORKERS workers on their own port, with leases in the shared database, and HAProxy sees both up"
ct_use "${HOSTS[1]}"
ct task-list-bot status 2>&1 | head -n 20 | sed 's/^/task-list-bot status on host 1: /' | note

# --- the scenarios -------------------------------------------------------------

# scenario NAME ARGS...: two_hosts.py NAME against the front, the fake and
# the database; its figures and result lines are printed and counted.
scenario() {
    local name=$1 rc
    shift
    run_logged "$WORK/$name.out" "${PY[@]}" "$name" --fake "$FAKE_URL" --bot "$FRONT_URL/" \
        --secret-file "$SECRET_FILE" --psql "$PG_BIN/psql" --pg "$PG_ADMIN" --out "$WORK/$name.json" "$@"
    rc=$?
    sed 's/^\(ok\|not ok\) - /&'"$name"': /' "$WORK/$name.out"
    PASSED=$((PASSED + $(grep -c '^ok - ' "$WORK/$name.out")))
    FAILED=$((FAILED + $(grep -c '^not ok - ' "$WORK/$name.out")))
    if ((rc != 0)) && ! grep -q '^not ok - ' "$WORK/$name.out"; then
        not_ok "$name: the driver failed (exit $rc)"
    fi
}

# hosts_did_their_part SCENARIO: both hosts' journals show deliveries
# received and checks written for SCENARIO, adding up to the fake's record
# (journald may take a moment to have the last lines).
hosts_did_their_part() {
    local out n args
    for _ in $(seq 1 20); do
        args=()
        for n in 1 2; do
            ct_use "${HOSTS[n]}" || return 1
            ct journalctl --no-pager -o json -u 'bot@*' --since "@$SINCE" >"$WORK/journal-$n.json"
            args+=(--journal "host$n=$WORK/journal-$n.json")
        done
        if out=$("${PY[@]}" hosts --result "$WORK/$1.json" "${args[@]}"); then
            echo "$out" | note
            return 0
        fi
        sleep 0.5
    done
    echo "$out" | note
    return 1
}

scenario burst --first-installation 1001 --installations 3 --prs 36 \
    --write-rate "$WRITE_RATE" --fleet-write-rate "$FLEET_WRITE_RATE" \
    --workers $((2 * WORKERS)) --workers-per-host "$WORKERS"
check "burst: both hosts received deliveries and wrote checks (at least a fifth each), adding up to the fake's record" \
    hosts_did_their_part burst

scenario race --first-installation 2001 --installations 2 --prs 10 --per-pr 7 --duration 1.5 \
    --connections 10 --seed "$SEED"
check "race: both hosts received deliveries and wrote checks (at least a fifth each), adding up to the fake's record" \
    hosts_did_their_part race

ct_use "${HOSTS[1]}"
scenario kill --first-installation 3001 --installations 2 --prs 30 --kill-after-writes 15 \
    --kill-pid "$CT_PID" --host "${HOSTS[1]}" --lease "$LEASE" --slack 5 --seed "$SEED"
# What is left of the killed machine: its mount point.
ct_use "${HOSTS[1]}" && ct_stop

survivor_serves() {
    ct_use "${HOSTS[2]}" || return 1
    workers_are "$(seq -s ' ' 1 "$WORKERS")" || { echo "host 2 runs bot@ $(running_workers)" | note; return 1; }
    "${PY[@]}" haproxy --stats "$STATS_URL" --backend task_list_bot --server host1=DOWN --server host2=UP --timeout 10 | note
}
check "after the kill: host 2 still runs its $WORKERS workers, HAProxy has host 1 down and host 2 up" survivor_serves
