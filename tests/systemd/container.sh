# shellcheck shell=bash
# Throw-away systemd machines for the tests under a booted systemd (sourced
# by harness.sh, not run).
#
# Boots the host's own systemd inside systemd-nspawn over a volatile overlay
# of / (see shared SYSTEMD-NOTES.md): everything written inside vanishes when
# the container stops, and the container shares the host's network namespace,
# so 127.0.0.1 inside is 127.0.0.1 outside.
#
#   ct_boot NAME STAGE_DIR LOG  boot; STAGE_DIR is visible read-only as /e2e
#   ct CMD...                   run CMD inside (systemctl, journalctl, sh -c …)
#   ct_stop                     halt, unmount, remove the mount point
#
# Several containers can run at once, each under its own NAME (its machine
# name and its mount point /var/lib/machines/NAME; the host name inside is
# the one of /etc/hostname, the same in all of them). `ct` and
# `ct_stop` act on the current one: the last one started, or the one
# `ct_use` picked. CT_NAME, CT_ROOT, CT_NSPAWN_PID and CT_PID describe it.
#
#   ct_start NAME STAGE_DIR LOG start booting; returns once PID 1 runs, so
#                               that several containers boot side by side
#   ct_wait_booted              wait until the current one finished booting
#                               (ct_boot is ct_start then ct_wait_booted)
#   ct_use NAME                 make NAME the current container
#   ct_kill                     SIGKILL the current one's PID 1: every
#                               process inside dies at once, as in a power
#                               cut (ct_stop then only cleans up)
#   ct_stop_all                 ct_stop every container started
#
# The container boots to sysinit.target (CT_BOOT_TARGET), not to the host's
# default target: the services enabled on the host (a database, say) would
# start in the container too, on the host's network, and fail or hang on
# ports the host or another such container already holds.
#
# Needs root, systemd-nspawn (package systemd-container) and nsenter.

CT_NAME=""         # the current container
CT_ROOT=""         # its bind mount of / that nspawn boots from
CT_NSPAWN_PID=""   # its systemd-nspawn process
CT_PID=""          # its PID 1 (systemd), child of systemd-nspawn
# The same, for every container started and not yet stopped, by NAME.
declare -gA CT_ROOTS=() CT_NSPAWN_PIDS=() CT_PIDS=()
CT_NAMES=()        # in the order they were started

ct() {
    nsenter -t "$CT_PID" -m -u -i -n -p -- \
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 "$@"
}

ct_use() {
    [[ -n ${CT_ROOTS[$1]+set} ]] || { echo "# no container named $1" >&2; return 1; }
    CT_NAME=$1
    CT_ROOT=${CT_ROOTS[$1]}
    CT_NSPAWN_PID=${CT_NSPAWN_PIDS[$1]}
    CT_PID=${CT_PIDS[$1]}
}

ct_boot() {
    ct_start "$@" && ct_wait_booted
}

ct_start() {
    local name=$1 stage=$2 log=$3 deadline pid=""
    CT_NAMES+=("$name")
    CT_ROOTS[$name]=/var/lib/machines/$name
    CT_NSPAWN_PIDS[$name]=""
    CT_PIDS[$name]=""
    ct_use "$name"
    mkdir -p "$CT_ROOT" || return 1
    # Non-recursive on purpose: only the root file system, none of the
    # mounts below it (/proc, /sys, /dev are set up by nspawn).
    mount --bind / "$CT_ROOT" || return 1
    systemd-nspawn -D "$CT_ROOT" --volatile=overlay \
        --register=no --keep-unit --machine="$name" \
        --bind-ro="$stage:/e2e" \
        --boot -- systemd.firstboot=off systemd.unit="${CT_BOOT_TARGET:-sysinit.target}" \
        </dev/null >"$log" 2>&1 &
    CT_NSPAWN_PID=$!
    CT_NSPAWN_PIDS[$name]=$CT_NSPAWN_PID

    deadline=$((SECONDS + 30))
    while [[ -z $pid ]]; do
        if ! kill -0 "$CT_NSPAWN_PID" 2>/dev/null; then
            echo "# systemd-nspawn exited during boot; its output:" && sed 's/^/#   /' "$log" | tail -n 30
            return 1
        fi
        if ((SECONDS > deadline)); then
            echo "# no container PID 1 after 30 s"
            return 1
        fi
        # nspawn forks helpers first; PID 1 is the child that runs systemd.
        local child children=()
        read -ra children < <(cat /proc/"$CT_NSPAWN_PID"/task/*/children 2>/dev/null)
        for child in "${children[@]}"; do
            [[ $(cat /proc/"$child"/comm 2>/dev/null) == systemd ]] && pid=$child
        done
        [[ -n $pid ]] || sleep 0.2
    done
    CT_PID=$pid
    CT_PIDS[$name]=$pid
}

ct_wait_booted() {
    local deadline state
    # is-system-running --wait needs PID 1's private bus socket first.
    deadline=$((SECONDS + 120))
    while :; do
        state=$(timeout 60 nsenter -t "$CT_PID" -m -u -i -n -p -- systemctl is-system-running --wait 2>/dev/null)
        case $state in
            running | degraded) break ;;
        esac
        if ((SECONDS > deadline)); then
            echo "# the container did not finish booting in 120 s (state: ${state:-unknown})"
            return 1
        fi
        sleep 0.5
    done
    echo "# container $CT_NAME booted: systemd PID $CT_PID (host), state $state"
    if [[ $state == degraded ]]; then
        echo "# failed units in the container (not this project's):"
        ct systemctl --failed --no-legend --plain | sed 's/^/#   /'
    fi
}

ct_kill() {
    local deadline
    [[ -n $CT_PID ]] || return 1
    # The PID namespace ends with its PID 1: the kernel kills every process
    # inside, and nspawn exits.
    kill -KILL "$CT_PID" || return 1
    deadline=$((SECONDS + 30))
    while kill -0 "$CT_NSPAWN_PID" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    ! kill -0 "$CT_NSPAWN_PID" 2>/dev/null
}

ct_stop() {
    local deadline name=$CT_NAME i
    if [[ -n $CT_NSPAWN_PID ]] && kill -0 "$CT_NSPAWN_PID" 2>/dev/null; then
        # SIGTERM makes nspawn power the container off cleanly.
        kill -TERM "$CT_NSPAWN_PID" 2>/dev/null
        deadline=$((SECONDS + 45))
        while kill -0 "$CT_NSPAWN_PID" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.3
        done
        if kill -0 "$CT_NSPAWN_PID" 2>/dev/null; then
            echo "# container ${name:-?} did not halt in 45 s: killing it"
            # Killing the namespace's PID 1 kills every process inside.
            [[ -n $CT_PID ]] && kill -KILL "$CT_PID" 2>/dev/null
            kill -KILL "$CT_NSPAWN_PID" 2>/dev/null
        fi
    fi
    # Reaps nspawn whether it halted now or was killed before.
    [[ -n $CT_NSPAWN_PID ]] && wait "$CT_NSPAWN_PID" 2>/dev/null
    if [[ -n $CT_ROOT ]]; then
        if mountpoint -q "$CT_ROOT"; then
            umount "$CT_ROOT" 2>/dev/null || umount -l "$CT_ROOT"
        fi
        rmdir "$CT_ROOT" 2>/dev/null
    fi
    CT_NAME=""
    CT_NSPAWN_PID=""
    CT_PID=""
    CT_ROOT=""
    if [[ -n $name ]]; then
        unset "CT_ROOTS[$name]" "CT_NSPAWN_PIDS[$name]" "CT_PIDS[$name]"
        for i in "${!CT_NAMES[@]}"; do
            [[ ${CT_NAMES[i]} == "$name" ]] && unset "CT_NAMES[i]"
        done
        CT_NAMES=("${CT_NAMES[@]}")
    fi
    return 0
}

ct_stop_all() {
    local name
    # The current one first (the others may be gone already).
    [[ -n $CT_NAME ]] && ct_stop
    for name in "${CT_NAMES[@]}"; do
        ct_use "$name" && ct_stop
    done
    return 0
}
