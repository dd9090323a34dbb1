#!/usr/bin/env bash
# Install test of the task-list-bot Debian package under a real systemd.
#
#   tests/deb/test.sh --deb OLD.deb --deb-new NEW.deb --fake FAKE_BIN
#   tests/deb/test.sh --build --fake FAKE_BIN
#
# With --build, both packages are made by packaging/build-deb.sh from the
# current tree: the release build as VERSION-1 and the same build as
# VERSION-1+upgradetest (a newer version for dpkg, a new file on disk).
# FAKE_BIN is the project's fake GitHub (target/release/examples/fake_github).
#
# Checks, one `ok - …` / `not ok - …` line each, then `N passed, M failed`
# (exit status non-zero on any failure):
#  - lintian: no error, no warning without an override; the package's files
#  - without systemd (a chroot-like nspawn, no boot): install, upgrade,
#    remove and purge all succeed
#  - booted systemd (tests/systemd/container.sh): dpkg -i starts nothing
#    while no credentials are present and prints the next steps; the files,
#    the conffile, /etc/task-list-bot (root, 0700); the units verify;
#    credentials + settings + `systemctl enable --now bot.target` start
#    WEB_CONCURRENCY=4 workers, the socket and the redelivery timer;
#    signed webhooks are accepted, logged ("Request received", DELIVERY_ID)
#    and their checks reach the fake GitHub; the redelivery job works;
#  - upgrade (dpkg -i NEW) under steady signed webhook traffic: no delivery
#    refused or failed, each logged once, workers restarted one at a time
#    (each after the previous one was READY again), bot.socket untouched,
#    every worker on the new binary, local settings kept;
#  - apt-get remove stops everything and keeps settings, credentials and
#    state; a reinstall starts the configured fleet again; apt-get purge
#    leaves no unit, file or user behind.
#
# Needs root, systemd-nspawn (package systemd-container), nsenter, curl,
# python3, lintian (a missing one is installed). Everything is bounded by
# timeouts and the whole run by DEB_TEST_TIMEOUT seconds (default 900). The
# container is always torn down. On failure its journal is kept in
# DEB_TEST_ARTIFACTS (default: a directory under /tmp, printed).
#
# Sources tests/systemd/harness.sh (results, the fake GitHub, the container,
# sending webhooks through tests/systemd/webhooks.py, cleanup).

# Single quotes around ${…} are for dpkg-query formats and container scripts.
# shellcheck disable=SC2016

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR/../systemd source=harness.sh
source "$HERE/../systemd/harness.sh"

DEB_OLD=""
DEB_NEW=""
FAKE=""
BUILD=0
while (($#)); do
    case $1 in
        --deb) DEB_OLD=$2; shift 2 ;;
        --deb-new) DEB_NEW=$2; shift 2 ;;
        --fake) FAKE=$2; shift 2 ;;
        --build) BUILD=1; shift ;;
        -h | --help) show_help; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
if [[ -z $FAKE ]] || { ((!BUILD)) && [[ -z $DEB_OLD || -z $DEB_NEW ]]; }; then
    echo "usage: $0 --deb OLD.deb --deb-new NEW.deb --fake FAKE_BIN" >&2
    echo "       $0 --build --fake FAKE_BIN" >&2
    exit 2
fi
preflight "mounts, systemd-nspawn, dpkg in the container" lintian=lintian dpkg-deb
FAKE=$(realpath "$FAKE") || exit 2
[[ -x $FAKE ]] || { echo "not executable: $FAKE" >&2; exit 2; }

CHROOT_DIR=""
SENDER_PIDS=()
harness_init deb "${DEB_TEST_ARTIFACTS:-}"
start_guard "${DEB_TEST_TIMEOUT:-900}" "DEB_TEST_TIMEOUT reached"

# Called by the harness's EXIT trap.
before_teardown() {
    local pid
    for pid in "${SENDER_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    if [[ -n $CHROOT_DIR ]]; then
        mountpoint -q "$CHROOT_DIR" && { umount "$CHROOT_DIR" 2>/dev/null || umount -l "$CHROOT_DIR"; }
        rmdir "$CHROOT_DIR" 2>/dev/null
    fi
}
save_artifacts() {
    save_journal 60 'bot@*' bot.socket bot.target bot-redeliver.service bot-redeliver.timer
    save_files "$WORK"/*.json
}

# --- the packages ------------------------------------------------------------

if ((BUILD)); then
    echo "# building both packages with packaging/build-deb.sh"
    upstream=$(cd "$REPO" && cargo metadata --no-deps --format-version 1 |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["packages"][0]["version"])') || exit 2
    "$REPO/packaging/build-deb.sh" --deb-version "$upstream-1" --output "$WORK/old.deb" 2>&1 | note
    "$REPO/packaging/build-deb.sh" --no-build --deb-version "$upstream-1+upgradetest" \
        --output "$WORK/new.deb" 2>&1 | note
    DEB_OLD=$WORK/old.deb
    DEB_NEW=$WORK/new.deb
fi
DEB_OLD=$(realpath "$DEB_OLD") && DEB_NEW=$(realpath "$DEB_NEW") || exit 2
[[ -f $DEB_OLD && -f $DEB_NEW ]] || { echo "missing package: $DEB_OLD or $DEB_NEW" >&2; exit 2; }
V_OLD=$(dpkg-deb -f "$DEB_OLD" Version)
V_NEW=$(dpkg-deb -f "$DEB_NEW" Version)
echo "# packages: $V_OLD ($DEB_OLD) -> $V_NEW ($DEB_NEW)"
if ! dpkg --compare-versions "$V_NEW" gt "$V_OLD"; then
    echo "# --deb-new ($V_NEW) must have a higher version than --deb ($V_OLD)"
    exit 2
fi

# --- 1. the packages, without installing them --------------------------------

lintian_clean() {
    local deb out rc=0
    for deb in "$DEB_OLD" "$DEB_NEW"; do
        lintian --fail-on error,warning "$deb" >"$WORK/lintian.out" 2>&1 || rc=1
        out=$(grep -v '^running with root privileges' "$WORK/lintian.out")
        echo "lintian $(basename "$deb"): ${out:-(nothing to report)}" | note
    done
    return $rc
}
check "lintian: no error and no warning without an override, for both packages" lintian_clean

contents() {
    local listing missing=0 path
    listing=$(dpkg-deb -c "$DEB_OLD" | awk '{ print $6 $7 $8 }')
    for path in \
        ./usr/bin/task-list-bot \
        ./usr/lib/systemd/system/bot.socket \
        ./usr/lib/systemd/system/bot@.service \
        ./usr/lib/systemd/system/bot.target \
        ./usr/lib/systemd/system/bot-redeliver.service \
        ./usr/lib/systemd/system/bot-redeliver.timer \
        './usr/lib/systemd/system/bot.target.wants/bot-redeliver.timer->../bot-redeliver.timer' \
        './usr/lib/systemd/system-generators/task-list-bot-generator->../../../bin/task-list-bot' \
        ./usr/share/man/man1/task-list-bot.1.gz \
        ./etc/default/task-list-bot \
        ./usr/share/doc/task-list-bot/copyright \
        ./usr/share/doc/task-list-bot/grafana-dashboard.json \
        ./usr/share/doc/task-list-bot/changelog.Debian.gz; do
        grep -qxF -- "$path" <<<"$listing" || { echo "missing from the package: $path" | note; missing=1; }
    done
    local conffiles
    conffiles=$(dpkg-deb -I "$DEB_OLD" conffiles)
    echo "conffiles: $conffiles" | note
    [[ $conffiles == /etc/default/task-list-bot ]] || missing=1
    return $missing
}
check "the package holds the binary, 5 units, the timer and generator links, man page, conffile, copyright, changelog, Grafana dashboard" contents

# --- 2. without systemd --------------------------------------------------------

cp "$DEB_OLD" "$STAGE/old.deb"
cp "$DEB_NEW" "$STAGE/new.deb"
# The credential file ends in a newline, as an administrator's would (the bot
# drops it); the sender signs with the bare secret.
stage_credentials --newline
chmod -R a+rX "$STAGE"

# An nspawn container that runs one command instead of booting: like a chroot
# or an image build, nothing runs systemd (no /run/systemd/system). The
# package is installed, upgraded, removed and purged there; every
# maintainer script must succeed. (container.sh only boots; this is the one
# thing it lacks.)
without_systemd() {
    CHROOT_DIR=/var/lib/machines/$NAME-chroot
    mkdir -p "$CHROOT_DIR" && mount --bind / "$CHROOT_DIR" || return 1
    local rc=0
    timeout 180 systemd-nspawn -q -D "$CHROOT_DIR" --volatile=overlay --register=no --keep-unit \
        --machine="$NAME-chroot" --bind-ro="$STAGE:/e2e" --setenv=DEBIAN_FRONTEND=noninteractive \
        -- /bin/sh -euc '
            if [ -d /run/systemd/system ]; then echo "/run/systemd/system exists"; exit 1; fi
            install -m 0600 -D /e2e/private-key.pem /etc/task-list-bot/private-key.pem
            install -m 0600 /e2e/webhook-secret /etc/task-list-bot/webhook-secret
            dpkg -i /e2e/old.deb
            sed -i "s/^#APP_ID=.*/APP_ID=1/" /etc/default/task-list-bot
            dpkg -i --force-confold /e2e/new.deb
            dpkg -r task-list-bot
            dpkg -P task-list-bot
            for f in /usr/bin/task-list-bot /etc/default/task-list-bot /etc/task-list-bot; do
                if [ -e "$f" ]; then echo "left behind: $f"; exit 1; fi
            done
            echo "install, upgrade, remove, purge: all succeeded"
        ' </dev/null >"$WORK/chroot.log" 2>&1 || rc=1
    note <"$WORK/chroot.log"
    umount "$CHROOT_DIR" 2>/dev/null || umount -l "$CHROOT_DIR"
    rmdir "$CHROOT_DIR"
    CHROOT_DIR=""
    return $rc
}
check "without systemd running (chroot-like): dpkg -i, upgrade, dpkg -r and dpkg -P all succeed" without_systemd

# --- 3. a booted systemd -----------------------------------------------------

pick_ports
start_fake

# Our files and units, as a list to compare before the install and after the
# purge (the host's root, which the container overlays, may hold files of the
# same names: a developer's build). Not searched: the journal;
# /var/cache/man, man-db's cache of formatted pages, which man-db itself
# creates and expires; /var/lib/machines, where other tests running on the
# host mount their containers (the overlay shows the host's changes).
ours() {
    ct sh -c '
        find /etc /usr /var /run /srv /opt -xdev \
            \( -path /var/log/journal -o -path /run/log/journal -o -path /var/cache/man \
               -o -path /var/lib/machines \) -prune -o \
            \( -name "*task-list-bot*" -o -name "*bot.socket*" -o -name "*bot.target*" \
               -o -name "*bot@*" -o -name "*bot-redeliver*" \) -print 2>/dev/null
        systemctl list-units --all --no-legend --plain "bot*" "bot-redeliver*"
        systemctl list-unit-files --no-legend "bot*" "bot-redeliver*" 2>/dev/null | grep -v "^0 unit"
        getent passwd task-list-bot
        getent group task-list-bot
        true' | sort
}

boot_container

# This machine is a container image whose /usr/sbin/policy-rc.d forbids
# every service action (exit 101), as image builds do; the booted container
# plays a real host, where it is absent. (The chroot-like run above kept it.)
if ct test -e /usr/sbin/policy-rc.d; then
    echo "# removing /usr/sbin/policy-rc.d inside the container (a real host has none)"
    ct rm -f /usr/sbin/policy-rc.d
fi
ours >"$WORK/ours.before"
if [[ -s $WORK/ours.before ]]; then
    echo "# already present before the install (not counted as left behind):"
    note <"$WORK/ours.before"
fi

# Our units' state, as "bot.target=inactive bot.socket=inactive …".
states() {
    local unit out=""
    for unit in bot.target bot.socket bot-redeliver.timer; do
        out+="$unit=$(prop "$unit" ActiveState) "
    done
    echo "${out% }"
}

install_unconfigured() {
    local out rc=0
    out=$(ct env DEBIAN_FRONTEND=noninteractive dpkg -i /e2e/old.deb 2>&1) || rc=1
    echo "$out" | note
    ((rc == 0)) || return 1
    if ! grep -q 'not started' <<<"$out" || ! grep -q 'systemctl enable --now bot.target' <<<"$out"; then
        echo "no next steps printed" | note
        rc=1
    fi
    sleep 2 # anything started by mistake would show by now
    local s w enabled
    s=$(states)
    w=$(running_workers)
    enabled=$(ct systemctl is-enabled bot.target 2>&1)
    echo "after install: $s; workers running: ${w:-none}; bot.target is $enabled" | note
    [[ $s == "bot.target=inactive bot.socket=inactive bot-redeliver.timer=inactive" ]] || rc=1
    [[ -z $w && $enabled == disabled ]] || rc=1
    return $rc
}
check "dpkg -i without credentials: succeeds, prints the next steps, starts and enables nothing" install_unconfigured

installed_files() {
    local rc=0 out
    out=$(ct sh -c '
        set -e
        stat -c "%n %U:%G %a %F" /etc/task-list-bot /etc/default/task-list-bot /usr/bin/task-list-bot
        readlink -f /usr/lib/systemd/system-generators/task-list-bot-generator
        readlink -f /usr/lib/systemd/system/bot.target.wants/bot-redeliver.timer
        ls /usr/lib/systemd/system/bot.socket /usr/lib/systemd/system/bot@.service \
           /usr/lib/systemd/system/bot.target /usr/lib/systemd/system/bot-redeliver.service \
           /usr/lib/systemd/system/bot-redeliver.timer /usr/share/man/man1/task-list-bot.1.gz \
           /usr/share/doc/task-list-bot/copyright /usr/share/doc/task-list-bot/changelog.Debian.gz
        dpkg-query -W -f="conffiles:\${Conffiles}\n" task-list-bot
        zcat /usr/share/man/man1/task-list-bot.1.gz | grep -c "^\.TH task-list-bot"
        ls /run/systemd/generator/bot.target.wants
    ' 2>&1) || rc=1
    echo "$out" | note
    grep -q '^/etc/task-list-bot root:root 700 directory$' <<<"$out" || rc=1
    grep -qx '/usr/bin/task-list-bot' <<<"$out" || rc=1
    grep -qx '/usr/lib/systemd/system/bot-redeliver.timer' <<<"$out" || rc=1
    grep -q '^conffiles: /etc/default/task-list-bot [0-9a-f]\{32\}$' <<<"$out" || rc=1
    grep -qx 'bot@4.service' <<<"$out" || rc=1
    return $rc
}
check "installed: /etc/task-list-bot root 0700, conffile registered, generator link, man page, units; the generator ran" installed_files

verify_units() {
    local out rc
    out=$(ct sh -c 'cd /usr/lib/systemd/system && systemd-analyze verify bot.socket bot.target bot@1.service bot-redeliver.service bot-redeliver.timer' 2>&1)
    rc=$?
    [[ -n $out ]] && echo "$out" | note
    [[ $rc == 0 && -z $out ]]
}
check "systemd-analyze verify is clean for all units, bot-redeliver.service and .timer included" verify_units

redeliver_hardened() {
    local out score worker
    out=$(ct systemd-analyze security --no-pager bot-redeliver.service 2>&1)
    score=$(sed -n 's/.*Overall exposure level for bot-redeliver.service: \([0-9.]*\).*/\1/p' <<<"$out")
    worker=$(ct systemd-analyze security --no-pager bot@1.service 2>&1 |
        sed -n 's/.*Overall exposure level for bot@1.service: \([0-9.]*\).*/\1/p')
    echo "exposure: bot-redeliver.service ${score:-none}, bot@1.service ${worker:-none}" | note
    [[ -n $score && -n $worker ]] && awk -v s="$score" -v w="$worker" 'BEGIN { exit !(s <= 2.0 && s <= w + 0.05) }'
}
check "bot-redeliver.service is hardened like bot@.service (systemd-analyze security <= 2.0)" redeliver_hardened

configure() {
    ct sh -euc "
        install -m 0600 /e2e/private-key.pem /etc/task-list-bot/private-key.pem
        install -m 0600 /e2e/webhook-secret /etc/task-list-bot/webhook-secret
        sed -i -e 's|^#APP_ID=.*|APP_ID=1|' \
            -e 's|^#GHE_HOST=.*|GHE_HOST=127.0.0.1:$FAKE_PORT|' \
            -e 's|^#GHE_PROTOCOL=.*|GHE_PROTOCOL=http|' \
            -e 's|^#HOST=.*|HOST=127.0.0.1|' \
            -e 's|^#PORT=.*|PORT=$BOT_PORT|' /etc/default/task-list-bot
        grep -E '^(APP_ID|GHE_HOST|GHE_PROTOCOL|HOST|PORT)=' /etc/default/task-list-bot
    " 2>&1 | note
    [[ ${PIPESTATUS[0]} == 0 ]] || return 1
    [[ $(ct grep -cE '^(APP_ID|GHE_HOST|GHE_PROTOCOL|HOST|PORT)=' /etc/default/task-list-bot) == 5 ]]
}
start_fleet() {
    configure || { echo "could not edit /etc/default/task-list-bot" | note; return 1; }
    ct systemctl enable --now bot.target 2>&1 | note
    [[ ${PIPESTATUS[0]} == 0 ]] || return 1
    wait_for 30 workers_are "1 2 3 4" || { echo "running: $(running_workers)" | note; return 1; }
    local s listen enabled
    s=$(states)
    listen=$(prop bot.socket Listen)
    enabled=$(ct systemctl is-enabled bot.target)
    echo "$s; workers $(running_workers); bot.socket listens on $listen; bot.target $enabled" | note
    [[ $s == "bot.target=active bot.socket=active bot-redeliver.timer=active" ]] &&
        [[ $listen == "127.0.0.1:$BOT_PORT (Stream)" && $enabled == enabled ]]
}
check "credentials + settings, then systemctl enable --now bot.target: 4 workers READY, socket on PORT, redelivery timer" start_fleet

webhooks_flow() {
    local since rc=0 id
    since=$(now)
    "${WEBHOOKS[@]}" seed --fake "$FAKE_URL" --installation 4301 --repo deb/smoke --prs 8 | note || return 1
    send --kind pr --installation 4301 --repo deb/smoke --count 8 --concurrency 4 \
        --id-prefix smoke --out "$WORK/smoke.json" | note
    sent_ok "$WORK/smoke.json" || rc=1
    logged_once smoke "$WORK/smoke.json" "$since" || rc=1
    id=$(python3 -c 'import json,sys; print((json.load(open(sys.argv[1]))["ok_ids"] or [""])[0])' "$WORK/smoke.json")
    echo "journalctl -u 'bot@*' DELIVERY_ID=$id:" | note
    ct journalctl --no-pager -o cat -u 'bot@*' DELIVERY_ID="$id" | note
    [[ $(ct journalctl --no-pager -o cat -u 'bot@*' DELIVERY_ID="$id" MESSAGE='Request received' | wc -l) == 1 ]] || rc=1
    "${WEBHOOKS[@]}" check-runs --fake "$FAKE_URL" --installation 4301 --repo deb/smoke --prs 8 \
        --timeout 30 --out "$WORK/smoke.runs.json" | note || rc=1
    return $rc
}
check "8 signed webhooks: accepted, logged once each (Request received, DELIVERY_ID), check runs reach the fake GitHub" webhooks_flow

redelivery() {
    local rc=0 delivery result
    delivery=$(curl -sS -m 10 -H 'content-type: application/json' \
        -d '{"event": "pull_request", "action": "opened", "status_code": 503}' "$FAKE_URL/_fake/deliveries" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') || return 1
    echo "the fake GitHub has a failed delivery $delivery; running bot-redeliver.service" | note
    ct timeout 120 systemctl start bot-redeliver.service || rc=1
    result=$(ct systemctl show -p Result -p ExecMainStatus -p User -p StateDirectory bot-redeliver.service | tr '\n' ' ')
    echo "bot-redeliver.service: $result" | note
    ct journalctl --no-pager -o cat -u bot-redeliver.service -n 5 | note
    [[ $result == *"Result=success"* && $result == *"ExecMainStatus=0"* ]] || rc=1
    curl -sS -m 10 "$FAKE_URL/_fake/redeliveries" >"$WORK/redeliveries.json"
    python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); print(d); sys.exit(0 if any(str(r["delivery_id"]) == sys.argv[2] for r in d) else 1)' \
        "$WORK/redeliveries.json" "$delivery" | note
    [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
    echo "timer: next run $(prop bot-redeliver.timer NextElapseUSecMonotonic) (monotonic)" | note
    return $rc
}
check "bot-redeliver.service (credential, shared state dir) asks the fake GitHub to redeliver a failed delivery" redelivery

# --- 4. upgrade under traffic --------------------------------------------------

# One line per worker: "N MAINPID ACTIVE_EXIT_US ACTIVE_ENTER_US".
worker_table() {
    local i
    for i in 1 2 3 4; do
        echo "$i $(prop "bot@$i.service" MainPID) $(prop "bot@$i.service" ActiveExitTimestampMonotonic) $(prop "bot@$i.service" ActiveEnterTimestampMonotonic)"
    done
}

upgrade() {
    local rc=0 before_socket after_socket t0 t1 dpkg_out
    "${WEBHOOKS[@]}" seed --fake "$FAKE_URL" --installation 4302 --repo deb/upgrade --prs 60 | note || return 1
    worker_table >"$WORK/workers.before"
    before_socket="$(prop bot.socket InvocationID) $(prop bot.socket ActiveEnterTimestampMonotonic)"
    local since
    since=$(now)
    # Steady traffic before, during and after the upgrade: pings at 40/s for
    # 40 s; and 60 pull-request events at 10/s just before it, which queue
    # more check-run writes than the fleet makes in that time (4 workers x
    # WRITE_RATE=1 for one installation), so that the workers have writes to
    # drain while they are restarted.
    send --kind ping --duration 40 --rate 40 --concurrency 8 --id-prefix upgping \
        --out "$WORK/upgping.json" >"$WORK/upgping.out" 2>&1 &
    SENDER_PIDS+=($!)
    sleep 3
    send --kind pr --installation 4302 --repo deb/upgrade --count 60 --rate 10 --concurrency 4 \
        --id-prefix upgpr --out "$WORK/upgpr.json" >"$WORK/upgpr.out" 2>&1 &
    SENDER_PIDS+=($!)
    sleep 4
    t0=$(date +%s.%N)
    dpkg_out=$(ct env DEBIAN_FRONTEND=noninteractive timeout 240 \
        dpkg -i --force-confdef --force-confold /e2e/new.deb 2>&1) || rc=1
    t1=$(date +%s.%N)
    echo "$dpkg_out" | note
    echo "dpkg -i $V_NEW took $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s" | note
    local pid
    for pid in "${SENDER_PIDS[@]}"; do wait "$pid"; done
    SENDER_PIDS=()
    note <"$WORK/upgping.out"
    note <"$WORK/upgpr.out"
    worker_table >"$WORK/workers.after"
    after_socket="$(prop bot.socket InvocationID) $(prop bot.socket ActiveEnterTimestampMonotonic)"
    echo "$before_socket" >"$WORK/socket.before"
    echo "$after_socket" >"$WORK/socket.after"
    echo "$since" >"$WORK/upgrade.since"
    echo "$t0 $t1" >"$WORK/upgrade.window"
    [[ $(ct dpkg-query -W -f='${Status} ${Version}' task-list-bot) == "install ok installed $V_NEW" ]] || rc=1
    return $rc
}
check "dpkg -i of the newer package ($V_NEW) under webhook traffic succeeds" upgrade

no_failed_request() {
    local rc=0 f
    for f in upgping upgpr; do
        [[ -f $WORK/$f.json ]] || return 1
        python3 - "$WORK/$f.json" "$WORK/upgrade.window" <<'EOF' | note || rc=1
import json, sys, time
d = json.load(open(sys.argv[1]))
t0, t1 = map(float, open(sys.argv[2]).read().split())
print(f"{sys.argv[1].rsplit('/', 1)[-1]}: {d['sent']} sent, {d['ok']} accepted, {d['failed']} failed; "
      f"traffic ended {d['finished_at'] - t1:.1f} s after the upgrade")
for r in d["failures"][:5]:
    at = time.strftime("%H:%M:%S", time.localtime(r["t"])) + f".{int(r['t'] * 1000) % 1000:03d}"
    print(f"  failed {r['id']} at {at} (answer or error time): {r['status']} {r['error']}")
sys.exit(0 if d["failed"] == 0 and d["ok"] > 0 else 1)
EOF
    done
    # The pings must cover the whole upgrade.
    python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); t0, t1 = map(float, open(sys.argv[2]).read().split()); sys.exit(0 if d["finished_at"] > t1 else 1)' \
        "$WORK/upgping.json" "$WORK/upgrade.window" || { echo "the traffic ended before the upgrade did" | note; rc=1; }
    return $rc
}
check "during the upgrade no delivery was refused or failed (traffic before, during and after it)" no_failed_request

upgrade_logged_once() {
    local rc=0
    logged_once upgping "$WORK/upgping.json" "$(cat "$WORK/upgrade.since")" || rc=1
    logged_once upgpr "$WORK/upgpr.json" "$(cat "$WORK/upgrade.since")" || rc=1
    return $rc
}
check "every delivery accepted during the upgrade was logged by a worker exactly once" upgrade_logged_once

one_at_a_time() {
    python3 - "$WORK/workers.before" "$WORK/workers.after" <<'EOF' | note
import sys
before = {int(l.split()[0]): l.split()[1:] for l in open(sys.argv[1]) if l.strip()}
after = {int(l.split()[0]): l.split()[1:] for l in open(sys.argv[2]) if l.strip()}
ok = True
downs = []
for n in sorted(after):
    pid0, _, enter0 = before[n]
    pid1, exit1, enter1 = after[n]
    exit1, enter1, enter0 = int(exit1), int(enter1), int(enter0)
    restarted = pid1 != pid0 and exit1 > enter0 and enter1 > exit1
    print(f"bot@{n}: pid {pid0} -> {pid1}, down from {exit1 / 1e6:.3f} to ready at {enter1 / 1e6:.3f} "
          f"({(enter1 - exit1) / 1e6:.2f} s){'' if restarted else ': NOT restarted'}")
    ok &= restarted
    downs.append((exit1, enter1, n))
downs.sort()
for (s1, e1, a), (s2, e2, b) in zip(downs, downs[1:]):
    if s2 < e1:
        print(f"bot@{b} went down before bot@{a} was READY again")
        ok = False
print("order:", " ".join(f"bot@{n}" for _, _, n in downs))
sys.exit(0 if ok else 1)
EOF
    [[ ${PIPESTATUS[0]} == 0 ]]
}
check "the upgrade restarted the 4 workers one at a time, each after the previous one was READY again" one_at_a_time

socket_untouched() {
    echo "bot.socket InvocationID/ActiveEnter before: $(cat "$WORK/socket.before"), after: $(cat "$WORK/socket.after"); now $(prop bot.socket ActiveState)" | note
    [[ $(cat "$WORK/socket.before") == "$(cat "$WORK/socket.after")" && $(prop bot.socket ActiveState) == active ]]
}
check "bot.socket was not restarted by the upgrade (same invocation, active throughout)" socket_untouched

new_binary() {
    local rc=0 inode i pid exe probot
    inode=$(ct stat -c %i /usr/bin/task-list-bot)
    for i in 1 2 3 4; do
        pid=$(prop "bot@$i.service" MainPID)
        exe=$(ct sh -c "stat -L -c %i /proc/$pid/exe; readlink /proc/$pid/exe" | tr '\n' ' ')
        echo "bot@$i pid $pid: exe inode/path $exe(binary on disk: inode $inode)" | note
        [[ $exe == "$inode /usr/bin/task-list-bot " ]] || rc=1
    done
    probot=$(curl -sS -m 10 "$BOT_URL/probot" | grep -o 'version [^<]*')
    echo "GET /probot: ${probot:-no answer}; package $(ct dpkg-query -W -f='${Version}' task-list-bot)" | note
    [[ -n $probot ]] || rc=1
    return $rc
}
check "all 4 workers run the new binary (/proc/PID/exe is the new /usr/bin/task-list-bot)" new_binary

upgrade_checks_arrive() {
    "${WEBHOOKS[@]}" check-runs --fake "$FAKE_URL" --installation 4302 --repo deb/upgrade --prs 60 \
        --timeout 60 --out "$WORK/upgrade.runs.json" | note
    [[ ${PIPESTATUS[0]} == 0 ]]
}
check "the 60 pull requests delivered across the upgrade all got their check run" upgrade_checks_arrive

settings_kept() {
    local out
    out=$(ct sh -c 'grep -cE "^(APP_ID=1|GHE_PROTOCOL=http|HOST=127.0.0.1|PORT=[0-9]+)$" /etc/default/task-list-bot; ls /etc/default/ | grep -c "task-list-bot.dpkg" || true; stat -c "%n %a" /etc/task-list-bot/private-key.pem /etc/task-list-bot/webhook-secret' 2>&1)
    echo "$out" | note
    [[ $(sed -n 1p <<<"$out") == 4 && $(sed -n 2p <<<"$out") == 0 ]] && grep -q 'private-key.pem 600' <<<"$out"
}
check "local edits of the conffile and the credentials survive the upgrade (no .dpkg-* copies)" settings_kept

# --- 5. remove and purge -------------------------------------------------------

remove() {
    local rc=0 s loaded
    ct env DEBIAN_FRONTEND=noninteractive timeout 120 apt-get remove -y -q task-list-bot 2>&1 | tail -n 4 | note
    [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
    s=$(states)
    loaded=$(ct systemctl list-units --all --no-legend --plain 'bot*' 'bot-redeliver*')
    echo "after remove: $s; loaded units: ${loaded:-none}" | note
    [[ -z $loaded || $s == "bot.target=inactive bot.socket=inactive bot-redeliver.timer=inactive" ]] || rc=1
    [[ -z $(running_workers) ]] || rc=1
    if curl -sS -m 5 -o /dev/null "$BOT_URL/ping" 2>/dev/null; then
        echo "port $BOT_PORT still answers" | note
        rc=1
    fi
    ct sh -c 'test ! -e /usr/bin/task-list-bot && test -f /etc/default/task-list-bot &&
        test -f /etc/task-list-bot/private-key.pem && test -d /var/lib/private/task-list-bot' || {
        echo "remove should delete the binary and keep the configuration, credentials and state" | note
        rc=1
    }
    echo "dpkg status: $(ct dpkg-query -W -f='${db:Status-Abbrev}' task-list-bot)" | note
    return $rc
}
check "apt-get remove: the fleet, socket and timer stop, the port closes; configuration, credentials, state stay" remove

reinstall() {
    local rc=0
    ct env DEBIAN_FRONTEND=noninteractive timeout 120 dpkg -i --force-confold /e2e/new.deb 2>&1 | tail -n 3 | note
    [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
    wait_for 30 workers_are "1 2 3 4" || rc=1
    echo "after reinstall: $(states); workers $(running_workers); bot.target $(ct systemctl is-enabled bot.target)" | note
    [[ $(states) == "bot.target=active bot.socket=active bot-redeliver.timer=active" ]] || rc=1
    [[ $(curl -sS -m 10 "$BOT_URL/ping") == PONG ]] || rc=1
    ct env DEBIAN_FRONTEND=noninteractive timeout 120 apt-get remove -y -q task-list-bot 2>&1 | tail -n 2 | note
    [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
    return $rc
}
check "reinstall after remove (configured, was enabled): the fleet starts again; removed again" reinstall

purge() {
    local rc=0 out
    ct env DEBIAN_FRONTEND=noninteractive timeout 120 apt-get purge -y -q task-list-bot 2>&1 | tail -n 4 | note
    [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
    # Forgotten, or at most known as not installed ("un").
    if ct dpkg-query -W -f='${db:Status-Abbrev}' task-list-bot 2>/dev/null | grep -q '^.[^n]'; then
        echo "dpkg still knows task-list-bot: $(ct dpkg-query -W -f='${db:Status-Abbrev}' task-list-bot)" | note
        rc=1
    fi
    # Stopped units whose file is gone are dropped from memory by systemd's
    # garbage collection, which can lag a few seconds behind the reload.
    local t0=$SECONDS
    if ! wait_for 20 eval '[[ -z $(ct systemctl list-units --all --no-legend --plain "bot*" "bot-redeliver*") ]]'; then
        echo "units still loaded after 20 s" | note
    elif ((SECONDS > t0)); then
        echo "systemd dropped the stopped units from memory after $((SECONDS - t0)) s" | note
    fi
    ours >"$WORK/ours.after"
    out=$(comm -13 "$WORK/ours.before" "$WORK/ours.after")
    if [[ -n $out ]]; then
        echo "left behind:" | note
        echo "$out" | note
        rc=1
    else
        echo "no file, unit or user named after the package, bot.*, bot@* or bot-redeliver* is left" | note
    fi
    return $rc
}
check "apt-get purge: no unit, file, state directory, credential or user of ours is left" purge
