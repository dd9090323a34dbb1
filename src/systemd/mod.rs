//! Everything that knows about systemd, kept out of the library: the passed
//! listening socket, sd_notify (READY, STATUS, WATCHDOG, STOPPING), the
//! journal, and the generator. Each piece does nothing when its variable is
//! absent, so the same binary runs by hand too.

pub mod generator;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use sd_notify::NotifyState;
use task_list_bot::server::Liveness;
use task_list_bot::worker::Stats;

/// The listener systemd passed (LISTEN_FDS), or one bound to `host:port`.
///
/// Must run before any thread starts: listenfd removes LISTEN_FDS and
/// LISTEN_PID from the environment.
pub fn take_listener(host: Option<&str>, port: u16) -> anyhow::Result<(TcpListener, bool)> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() > 0 {
        if fds.len() > 1 {
            bail!("systemd passed {} sockets; expected exactly one", fds.len());
        }
        let listener = fds
            .take_tcp_listener(0)
            .context("the socket passed by systemd (LISTEN_FDS) is not a TCP stream socket")?
            .context("the socket passed by systemd was already taken")?;
        if !is_listening(&listener) {
            bail!("the socket passed by systemd (LISTEN_FDS) is not listening");
        }
        listener
            .set_nonblocking(true)
            .context("making the passed socket non-blocking")?;
        return Ok((listener, true));
    }
    let address = bind_address(host, port)?;
    let listener = TcpListener::bind(address).with_context(|| format!("binding {address}"))?;
    listener
        .set_nonblocking(true)
        .context("making the socket non-blocking")?;
    Ok((listener, false))
}

fn bind_address(host: Option<&str>, port: u16) -> anyhow::Result<SocketAddr> {
    let host = host.unwrap_or("0.0.0.0");
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving HOST {host:?}"))?
        .next()
        .with_context(|| format!("HOST {host:?} has no address"))
}

fn is_listening(listener: &TcpListener) -> bool {
    let mut accepting: libc::c_int = 0;
    let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid fd, and an out-parameter of the size we pass.
    let result = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut accepting as *mut libc::c_int).cast(),
            &mut length,
        )
    };
    result == 0 && accepting != 0
}

/// Whether stderr is connected to the journal (JOURNAL_STREAM names its
/// device and inode), as systemd.exec(5) says to check.
pub fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((device, inode)) = stream.split_once(':') else {
        return false;
    };
    let (Ok(device), Ok(inode)) = (device.parse::<u64>(), inode.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat on fd 2 into a zeroed stat buffer.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut stat) } != 0 {
        return false;
    }
    stat.st_dev == device && stat.st_ino == inode
}

/// Tells systemd the worker is ready: only once the configuration is valid
/// and the listener is in hand.
pub fn notify_ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the worker is stopping, and that it may take up to
/// `stop_time` (plus a margin): EXTEND_TIMEOUT_USEC lets a DRAIN_TIMEOUT
/// longer than the unit's TimeoutStopSec= end in a clean exit, not SIGKILL.
pub fn notify_stopping(stop_time: Duration) {
    const MARGIN: Duration = Duration::from_secs(5);
    // DRAIN_TIMEOUT is at most an hour, well inside u32 microseconds.
    let extend = u32::try_from((stop_time + MARGIN).as_micros()).unwrap_or(u32::MAX);
    notify(&[
        NotifyState::Stopping,
        NotifyState::ExtendTimeoutUsec(extend),
        NotifyState::Status("stopping: draining queued checks"),
    ]);
}

fn notify(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

/// Pings the watchdog four times per WATCHDOG_USEC from a task on the tokio
/// runtime, and only while [`Liveness::check`] finds the store thread and
/// the worker loop making progress: a stalled runtime runs no ping, a
/// wedged store or loop withholds it, and either way systemd restarts us.
pub fn spawn_watchdog(liveness: Liveness) {
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(timeout / 4);
        let mut stuck = false;
        loop {
            tick.tick().await;
            match liveness.check() {
                Ok(()) => {
                    if stuck {
                        tracing::info!("progress again: watchdog pings resumed");
                    }
                    stuck = false;
                    notify(&[NotifyState::Watchdog]);
                }
                Err(what) => {
                    if !stuck {
                        tracing::error!(what, "no progress: watchdog pings withheld");
                    }
                    stuck = true;
                }
            }
        }
    });
}

/// Keeps STATUS= current with the worker's live figures and the store's
/// health, all read from what is kept in memory: never waits for the store.
pub fn spawn_status(stats: Arc<Stats>, liveness: Liveness) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut last = String::new();
        loop {
            tick.tick().await;
            let store = liveness.store().health();
            let line = format!("{}, {}", stats.status_line(store.pending), store.summary());
            if line != last {
                notify(&[NotifyState::Status(&line)]);
                last = line;
            }
        }
    });
}

/// A fault for the end-to-end tests, compiled only with the
/// `fault-injection` feature (never into the package), off unless
/// `TASK_LIST_BOT_FAULT=stall-runtime-after=SECS` is set: after SECS seconds
/// every runtime thread blocks, as a deadlock would, so the watchdog fires.
#[cfg(feature = "fault-injection")]
pub fn spawn_test_fault(runtime_threads: usize) {
    let Ok(fault) = std::env::var("TASK_LIST_BOT_FAULT") else {
        return;
    };
    let Some(seconds) = fault
        .strip_prefix("stall-runtime-after=")
        .and_then(|s| s.parse::<u64>().ok())
    else {
        tracing::warn!(fault, "unknown TASK_LIST_BOT_FAULT ignored");
        return;
    };
    tracing::warn!(seconds, "test fault armed: the runtime will stall");
    for _ in 0..runtime_threads {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        });
    }
}
