//! Runs the release binary as systemd runs the fleet: one listening socket,
//! bound here and inherited by every worker as fd 3 (`LISTEN_FDS=1`,
//! `LISTEN_PID` = the worker's own pid), and a notify socket per worker on
//! which it reports `READY=1` and its `STATUS=` figures.
//!
//! A socket per worker (where systemd has one for all and tells senders
//! apart by their credentials) lets the benchmark attribute every
//! notification to its worker without `SCM_CREDENTIALS` plumbing.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::UnixDatagram;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::procfs;

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FD: RawFd = 3;
/// How long a worker may take to report `READY=1` before the run is broken.
const READY_PATIENCE: Duration = Duration::from_secs(15);
/// How long a worker may take to exit after SIGTERM before it is killed.
/// Longer than the bot's default `DRAIN_TIMEOUT` (20 s), as systemd's
/// `TimeoutStopSec` is.
const STOP_PATIENCE: Duration = Duration::from_secs(30);
/// How often status figures are polled.
const POLL: Duration = Duration::from_millis(100);
/// How often a stopping child is polled: the resolution of the stop time.
const EXIT_POLL: Duration = Duration::from_millis(1);

/// What every worker of a fleet is started with.
pub struct FleetSettings {
    pub bot: PathBuf,
    pub workers: usize,
    /// `127.0.0.1:PORT` of the fake GitHub.
    pub github_host: String,
    pub webhook_secret: String,
    pub private_key_path: PathBuf,
    /// Holds the state directory, notify sockets and worker logs.
    pub run_dir: PathBuf,
    pub log_level: String,
    /// The fleet's PostgreSQL pending set, instead of the state directory.
    pub database_url: Option<String>,
}

/// The figures of a worker's `STATUS=` line (`pending N, waiting on limiter
/// N, deliveries N, writes N, unchanged N, dropped N, last GitHub error: …`).
/// Counters are cumulative since the worker started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusFigures {
    /// Items in the host's shared pending set (the same for every worker).
    pub pending: u64,
    pub waiting_on_limiter: u64,
    pub deliveries: u64,
    pub writes: u64,
    pub unchanged: u64,
    pub dropped: u64,
}

impl StatusFigures {
    /// Reads a `STATUS=` value; `None` for other lines such as the
    /// "listening on …" status sent with `READY=1`.
    pub fn parse(status: &str) -> Option<StatusFigures> {
        let figure = |label: &str| -> Option<u64> {
            let start = status.find(label)? + label.len();
            let digits: String = status[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        Some(StatusFigures {
            pending: figure("pending ")?,
            waiting_on_limiter: figure("waiting on limiter ")?,
            deliveries: figure("deliveries ")?,
            writes: figure("writes ")?,
            unchanged: figure("unchanged ")?,
            dropped: figure("dropped ")?,
        })
    }

    /// Counters accumulated since `before`; gauges as they are now.
    pub fn since(&self, before: &StatusFigures) -> StatusFigures {
        StatusFigures {
            pending: self.pending,
            waiting_on_limiter: self.waiting_on_limiter,
            deliveries: self.deliveries.saturating_sub(before.deliveries),
            writes: self.writes.saturating_sub(before.writes),
            unchanged: self.unchanged.saturating_sub(before.unchanged),
            dropped: self.dropped.saturating_sub(before.dropped),
        }
    }
}

/// Everything a worker said on its notify socket.
#[derive(Clone, Debug, Default)]
pub struct Notifications {
    pub ready_at: Option<Instant>,
    pub figures: Option<StatusFigures>,
    pub last_status: String,
    pub stopping: bool,
}

impl Notifications {
    fn apply(&mut self, datagram: &str, received_at: Instant) {
        for line in datagram.lines() {
            if line == "READY=1" {
                self.ready_at.get_or_insert(received_at);
            } else if line == "STOPPING=1" {
                self.stopping = true;
            } else if let Some(status) = line.strip_prefix("STATUS=") {
                self.last_status = status.to_owned();
                if let Some(figures) = StatusFigures::parse(status) {
                    self.figures = Some(figures);
                }
            }
        }
    }
}

/// One worker process.
pub struct Worker {
    pub number: usize,
    pub pid: u32,
    /// Just before fork and exec.
    pub spawned_at: Instant,
    pub log_path: PathBuf,
    child: Child,
    notifications: watch::Receiver<Notifications>,
    notify_task: JoinHandle<()>,
}

/// A worker the benchmark gives up on (an error or panic mid-run) must not
/// outlive it.
impl Drop for Worker {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.notify_task.abort();
    }
}

impl Worker {
    /// From exec to `READY=1`.
    pub fn startup(&self) -> Option<Duration> {
        let ready_at = self.notifications.borrow().ready_at?;
        Some(ready_at.saturating_duration_since(self.spawned_at))
    }

    pub fn figures(&self) -> Option<StatusFigures> {
        self.notifications.borrow().figures
    }
}

/// The workers' memory at one moment, per worker.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    pub resident: Vec<u64>,
    pub proportional: Vec<u64>,
}

/// How a worker ended.
#[derive(Debug)]
pub struct StopReport {
    pub number: usize,
    /// SIGTERM until exit.
    pub took: Duration,
    pub exit: String,
    pub clean: bool,
    pub said_stopping: bool,
}

/// A running fleet sharing one listening socket.
pub struct Fleet {
    pub address: SocketAddr,
    pub workers: Vec<Worker>,
    /// Kept open for the fleet's life, as systemd keeps `bot.socket`.
    _listener: TcpListener,
}

impl Fleet {
    /// Binds the socket, starts every worker at once (as `bot.target`
    /// does) and waits for each one's `READY=1`.
    pub async fn start(settings: &FleetSettings) -> anyhow::Result<Fleet> {
        std::fs::create_dir_all(&settings.run_dir)
            .with_context(|| format!("creating {}", settings.run_dir.display()))?;
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the fleet's socket")?;
        use_systemd_backlog(&listener)?;
        let address = listener
            .local_addr()
            .context("reading the fleet's address")?;
        let mut workers = Vec::with_capacity(settings.workers);
        for number in 1..=settings.workers {
            workers.push(spawn_worker(settings, &listener, number)?);
        }
        let fleet = Fleet {
            address,
            workers,
            _listener: listener,
        };
        fleet.wait_until_ready().await?;
        Ok(fleet)
    }

    async fn wait_until_ready(&self) -> anyhow::Result<()> {
        for worker in &self.workers {
            let mut notifications = worker.notifications.clone();
            let ready = notifications.wait_for(|n| n.ready_at.is_some());
            match tokio::time::timeout(READY_PATIENCE, ready).await {
                Ok(Ok(_)) => {}
                _ => bail!(
                    "worker {} (pid {}) did not report READY=1 within {READY_PATIENCE:?}; its log:\n{}",
                    worker.number,
                    worker.pid,
                    log_tail(&worker.log_path)
                ),
            }
        }
        Ok(())
    }

    /// Each worker's time from exec to `READY=1`.
    pub fn startup_times(&self) -> Vec<Option<Duration>> {
        self.workers.iter().map(Worker::startup).collect()
    }

    /// Each worker's latest figures (zero for one that sent none yet).
    pub fn figures(&self) -> Vec<StatusFigures> {
        self.workers
            .iter()
            .map(|worker| worker.figures().unwrap_or_default())
            .collect()
    }

    /// Each worker's figures accumulated since `before`.
    pub fn figures_since(&self, before: &[StatusFigures]) -> Vec<StatusFigures> {
        self.figures()
            .iter()
            .zip(before)
            .map(|(now, before)| now.since(before))
            .collect()
    }

    /// Waits until every worker reports an empty pending set and nothing
    /// waiting on its limiter, and together at least `deliveries` more
    /// deliveries and `writes` more writes than in `before`. Workers update
    /// `STATUS=` every 2 s, so this lags the truth by up to that much.
    pub async fn wait_until_idle(
        &self,
        before: &[StatusFigures],
        deliveries: u64,
        writes: u64,
        patience: Duration,
    ) -> bool {
        let deadline = Instant::now() + patience;
        loop {
            let since = self.figures_since(before);
            let idle = self.workers.iter().all(|w| {
                w.figures()
                    .is_some_and(|f| f.pending == 0 && f.waiting_on_limiter == 0)
            });
            let delivered: u64 = since.iter().map(|f| f.deliveries).sum();
            let written: u64 = since.iter().map(|f| f.writes).sum();
            if idle && delivered >= deliveries && written >= writes {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().map(|worker| worker.pid).collect()
    }

    /// Fails, with the worker's log, when a worker has exited: every later
    /// figure would be wrong without saying so.
    pub fn ensure_running(&self) -> anyhow::Result<()> {
        for worker in &self.workers {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", worker.pid));
            let exited = match &stat {
                Ok(stat) => stat
                    .rfind(')')
                    .and_then(|end| stat[end + 1..].split_whitespace().next())
                    .is_some_and(|state| state == "Z" || state == "X"),
                Err(_) => true,
            };
            if exited {
                bail!(
                    "worker {} (pid {}) exited during the run; its log:\n{}",
                    worker.number,
                    worker.pid,
                    log_tail(&worker.log_path)
                );
            }
        }
        Ok(())
    }

    /// `VmRSS` and `Pss` of each worker, now.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        self.ensure_running()?;
        let pids = self.pids();
        Ok(Memory {
            resident: pids
                .iter()
                .map(|&pid| procfs::resident_bytes(pid))
                .collect::<anyhow::Result<_>>()?,
            proportional: pids
                .iter()
                .map(|&pid| procfs::proportional_bytes(pid))
                .collect::<anyhow::Result<_>>()?,
        })
    }

    /// CPU time (user + system) the workers have used so far, together.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        self.pids().into_iter().map(procfs::cpu_time).sum()
    }

    /// Every thread of every worker, with what it has done so far.
    pub fn threads(&self) -> anyhow::Result<BTreeMap<u32, procfs::ThreadTimes>> {
        let mut threads = BTreeMap::new();
        for pid in self.pids() {
            threads.extend(procfs::threads(pid)?);
        }
        Ok(threads)
    }

    /// SIGTERM to every worker at once, then waits for each (SIGKILL after
    /// [`STOP_PATIENCE`]).
    pub async fn stop(mut self) -> Vec<StopReport> {
        let signalled_at = Instant::now();
        for worker in &self.workers {
            signal(worker.pid, libc::SIGTERM);
        }
        // All children are polled together, so that each one's stop time is
        // its own and not the slowest sibling's.
        let deadline = signalled_at + STOP_PATIENCE;
        let mut exits: Vec<Option<Exit>> = self.workers.iter().map(|_| None).collect();
        while exits.iter().any(Option::is_none) {
            for (worker, exit) in self.workers.iter_mut().zip(&mut exits) {
                if exit.is_none() {
                    *exit = poll_exit(&mut worker.child, signalled_at, deadline);
                }
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
        // STOPPING=1 was sent before the exit; let its reader catch up.
        tokio::time::sleep(POLL).await;
        let mut reports = Vec::with_capacity(exits.len());
        for (worker, exit) in self.workers.iter().zip(exits.into_iter().flatten()) {
            reports.push(StopReport {
                number: worker.number,
                took: exit.took,
                exit: exit.status,
                clean: exit.clean,
                said_stopping: worker.notifications.borrow().stopping,
            });
        }
        reports
    }
}

/// std listens with a backlog of 128; systemd's `Backlog=` defaults to
/// SOMAXCONN. Listening again on a listening socket only changes the backlog.
fn use_systemd_backlog(listener: &TcpListener) -> anyhow::Result<()> {
    // SAFETY: listen on a socket fd we own.
    if unsafe { libc::listen(listener.as_raw_fd(), libc::SOMAXCONN) } == -1 {
        return Err(io::Error::last_os_error()).context("setting the fleet socket's backlog");
    }
    Ok(())
}

fn spawn_worker(
    settings: &FleetSettings,
    listener: &TcpListener,
    number: usize,
) -> anyhow::Result<Worker> {
    let notify_path = settings.run_dir.join(format!("notify-{number}.sock"));
    let _ = std::fs::remove_file(&notify_path);
    let socket = UnixDatagram::bind(&notify_path)
        .with_context(|| format!("binding {}", notify_path.display()))?;
    let (sender, notifications) = watch::channel(Notifications::default());
    let notify_task = tokio::spawn(listen_for_notifications(socket, sender));

    let log_path = settings.run_dir.join(format!("worker-{number}.log"));
    // Appended to, so a restarted worker's log follows its first one.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let log_for_stdout = log
        .try_clone()
        .with_context(|| format!("duplicating {}", log_path.display()))?;
    let mut command = worker_command(settings, number, &notify_path);
    command
        .stdin(Stdio::null())
        .stdout(log_for_stdout)
        .stderr(log);
    hand_over_listener(&mut command, listener.as_raw_fd());
    let spawned_at = Instant::now();
    let child = command
        .spawn()
        .with_context(|| format!("starting worker {number} ({})", settings.bot.display()))?;
    Ok(Worker {
        number,
        pid: child.id(),
        spawned_at,
        log_path,
        child,
        notifications,
        notify_task,
    })
}

/// `/bin/sh` sets `LISTEN_PID` to its own pid, then execs the bot in place,
/// so the variable names the bot's pid as sd_listen_fds(3) requires. The
/// environment is cleared so that nothing of the benchmark's (a stray
/// `PRIVATE_KEY`, `JOURNAL_STREAM`, `.env` in the working directory) leaks in.
fn worker_command(settings: &FleetSettings, number: usize, notify_path: &Path) -> Command {
    let state_directory = settings.run_dir.join("state");
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0" serve"#)
        .arg(&settings.bot)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("LISTEN_FDS", "1")
        .env("NOTIFY_SOCKET", notify_path)
        .env("WORKER", number.to_string())
        .env("STATE_DIRECTORY", state_directory)
        .env("APP_ID", "1")
        .env("PRIVATE_KEY_PATH", &settings.private_key_path)
        .env("WEBHOOK_SECRET", &settings.webhook_secret)
        .env("GHE_HOST", &settings.github_host)
        .env("GHE_PROTOCOL", "http")
        .env("WRITE_RATE", "1")
        .env("LOG_LEVEL", &settings.log_level)
        .current_dir(&settings.run_dir);
    if let Some(url) = &settings.database_url {
        command.env("DATABASE_URL", url);
    }
    command
}

/// Makes the listening socket the child's fd 3, as systemd does.
fn hand_over_listener(command: &mut Command, listener_fd: RawFd) {
    // SAFETY: the closure runs between fork and exec and calls only dup2
    // and fcntl, which are async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if listener_fd == LISTEN_FD {
                // dup2 onto itself would keep close-on-exec set.
                if libc::fcntl(LISTEN_FD, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(listener_fd, LISTEN_FD) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

async fn listen_for_notifications(socket: UnixDatagram, sender: watch::Sender<Notifications>) {
    let mut buffer = vec![0_u8; 8192];
    while let Ok(length) = socket.recv(&mut buffer).await {
        let received_at = Instant::now();
        let datagram = String::from_utf8_lossy(&buffer[..length]);
        sender.send_modify(|notifications| notifications.apply(&datagram, received_at));
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill with a pid we started and have not reaped yet, so the
    // pid cannot have been reused.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// How a child ended, seen from the SIGTERM sent to it.
struct Exit {
    status: String,
    /// Exit status 0.
    clean: bool,
    took: Duration,
}

/// The child's exit if it has exited; past the deadline, kills it first.
fn poll_exit(child: &mut Child, signalled_at: Instant, deadline: Instant) -> Option<Exit> {
    let exit = |status: String, clean: bool| Exit {
        status,
        clean,
        took: signalled_at.elapsed(),
    };
    match child.try_wait() {
        Ok(Some(status)) => Some(exit(status.to_string(), status.success())),
        Ok(None) if Instant::now() >= deadline => {
            let _ = child.kill();
            let status = child
                .wait()
                .map_or_else(|e| e.to_string(), |s| s.to_string());
            Some(exit(
                format!("killed after {STOP_PATIENCE:?}: {status}"),
                false,
            ))
        }
        Ok(None) => None,
        Err(error) => Some(exit(format!("cannot wait: {error}"), false)),
    }
}

/// The last lines of a worker's log, for error messages.
pub fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

/// Warning and error lines a worker logged (stderr is plain text when not
/// under journald, with ANSI colours, which are removed here).
pub fn logged_problems(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .map(without_ansi_colours)
                .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
                .collect()
        })
        .unwrap_or_else(|error| vec![format!("(cannot read {}: {error})", path.display())])
}

/// Removes `ESC [ … m` colour sequences.
fn without_ansi_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}
