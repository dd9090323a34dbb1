# shellcheck shell=bash
# A throw-away systemd machine for the tests under a booted systemd (sourced
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
# The container boots to sysinit.target (CT_BOOT_TARGET), not to the host's
# default target: the services enabled on the host (a database, say) would
# start in the container too, on the host's network, and fail or hang on
# ports the host or another such container already holds.
#
# Needs root, systemd-nspawn (package systemd-container) and nsenter.

CT_ROOT=""         # bind mount of / that nspawn boots from
CT_NSPAWN_PID=""   # the systemd-nspawn process
CT_PID=""          # the container's PID 1 (systemd), child of systemd-nspawn

ct() {
    nsenter -t "$CT_PID" -m -u -i -n -p -- \
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 "$@"
}

ct_boot() {
    local name=$1 stage=$2 log=$3 deadline state
    CT_ROOT=/var/lib/machines/$name
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

    deadline=$((SECONDS + 30))
    while [[ -z $CT_PID ]]; do
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
            [[ $(cat /proc/"$child"/comm 2>/dev/null) == systemd ]] && CT_PID=$child
        done
        [[ -n $CT_PID ]] || sleep 0.2
    done

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
    echo "# container booted: systemd PID $CT_PID (host), state $state"
    if [[ $state == degraded ]]; then
        echo "# failed units in the container (not this project's):"
        ct systemctl --failed --no-legend --plain | sed 's/^/#   /'
    fi
}

ct_stop() {
    local deadline
    if [[ -n $CT_NSPAWN_PID ]] && kill -0 "$CT_NSPAWN_PID" 2>/dev/null; then
        # SIGTERM makes nspawn power the container off cleanly.
        kill -TERM "$CT_NSPAWN_PID" 2>/dev/null
        deadline=$((SECONDS + 45))
        while kill -0 "$CT_NSPAWN_PID" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.3
        done
        if kill -0 "$CT_NSPAWN_PID" 2>/dev/null; then
            echo "# container did not halt in 45 s: killing it"
            # Killing the namespace's PID 1 kills every process inside.
            [[ -n $CT_PID ]] && kill -KILL "$CT_PID" 2>/dev/null
            kill -KILL "$CT_NSPAWN_PID" 2>/dev/null
        fi
        wait "$CT_NSPAWN_PID" 2>/dev/null
    fi
    CT_NSPAWN_PID=""
    CT_PID=""
    if [[ -n $CT_ROOT ]]; then
        if mountpoint -q "$CT_ROOT"; then
            umount "$CT_ROOT" 2>/dev/null || umount -l "$CT_ROOT"
        fi
        rmdir "$CT_ROOT" 2>/dev/null
        CT_ROOT=""
    fi
}
